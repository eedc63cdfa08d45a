/* migrate: schema migrations against the database (DESIGN.md §6): the plan
 * of migplan applied one transaction each under a transaction-scoped advisory
 * lock, for `neonfcgi migrate` and for MIGRATE_ON_START. */
#ifndef NEONFCGI_MIGRATE_H
#define NEONFCGI_MIGRATE_H

struct config;

enum migrate_mode { MIGRATE_RUN, MIGRATE_DRY_RUN, MIGRATE_STATUS };

/* `neonfcgi migrate [--dry-run]` / `migrate status`: output on stdout, errors
 * on stderr; exit status 0 or 1 (also when the database is unreachable). */
int migrate_command(const struct config *cfg, enum migrate_mode mode);
/* MIGRATE_ON_START, in the master before forking: log lines only; waits up to
 * DB_START_TIMEOUT_MS for a database that is down or waking. 0, 1, or
 * EX_UNAVAILABLE (sysexits.h) when the database never came up. */
int migrate_on_start(const struct config *cfg);

#endif
