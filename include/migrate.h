/* migrate: schema migrations (DESIGN.md §6): MIGRATIONS_DIR/NNNN_name.sql files
 * validated and planned against the applied rows (pure), then applied one
 * transaction each under a transaction-scoped advisory lock. */
#ifndef NEONFCGI_MIGRATE_H
#define NEONFCGI_MIGRATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

struct config;
struct problems;

#define MIGRATE_EX_UNAVAILABLE 69 /* sysexits.h EX_UNAVAILABLE: database never came up */
#define MIGRATE_SHA256_HEX     65 /* 64 hex digits + NUL */
#define MIGRATE_NO_TX_MARKER   "-- neonfcgi:no-transaction"

struct migrate_file {
	int version;
	char *name; /* "0002_users.sql" */
	char *sql;  /* the file's bytes, NUL-terminated (a NUL inside is refused) */
	size_t len;
	char checksum[MIGRATE_SHA256_HEX]; /* SHA-256 of the raw bytes, as sha256sum prints */
	bool no_transaction;               /* first line is MIGRATE_NO_TX_MARKER */
};

struct migrate_files {
	struct migrate_file *v;
	size_t n;
};

/* One row of neonfcgi_schema_migrations. */
struct migrate_applied {
	int version;
	char *name;
	char checksum[MIGRATE_SHA256_HEX];
	char *applied_at; /* "2026-01-02 03:04:05Z" */
};

struct migrate_applied_list {
	struct migrate_applied *v;
	size_t n;
};

enum migrate_state {
	MIGRATE_PENDING,      /* file not applied yet: to run */
	MIGRATE_APPLIED,      /* applied, file unchanged */
	MIGRATE_CHANGED,      /* applied, the file's checksum differs: refused */
	MIGRATE_RENAMED,      /* applied under another file name: refused */
	MIGRATE_MISSING,      /* applied, no file: reported, not fatal (a rolled-back deploy) */
	MIGRATE_OUT_OF_ORDER, /* not applied, but a later version is: refused */
};

struct migrate_step {
	int version;
	enum migrate_state state;
	const struct migrate_file *file;       /* NULL when MISSING */
	const struct migrate_applied *applied; /* NULL when PENDING / OUT_OF_ORDER */
};

struct migrate_plan {
	struct migrate_step *v;
	size_t n;
};

/* One statement of a SQL text, as psql would split it. */
struct migrate_stmt {
	size_t start, end; /* byte offsets; end excludes the ';' */
	int line;          /* 1-based line of the first byte */
	char keyword[16];  /* first word, lower case ("" when it is not a word) */
	char keyword2[16]; /* second word, lower case */
};

enum migrate_mode { MIGRATE_RUN, MIGRATE_DRY_RUN, MIGRATE_STATUS };

/* ---- pure: names, checksums, SQL, plans ---- */

/* True for "NNNN_name.sql": four digits 0001–9999, '_', then [a-z0-9_]+,
 * then ".sql" (lower case). *version gets the number. */
bool migrate_parse_name(const char *fname, int *version);
void migrate_sha256_hex(const void *data, size_t len, char out[MIGRATE_SHA256_HEX]);
bool migrate_has_no_tx_marker(const char *sql, size_t len);
/* Split at top-level semicolons (not in quotes, comments, dollar quotes,
 * parentheses or a CREATE FUNCTION … BEGIN ATOMIC body); empty statements are
 * dropped. Returns the count; *out (caller frees) may be NULL when 0. */
size_t migrate_split_sql(const char *sql, struct migrate_stmt **out);
/* Add one file (name and contents); a bad name or content is appended to p
 * and the file is not added. */
int migrate_files_add(struct migrate_files *fs, const char *fname, const char *data, size_t len,
		      struct problems *p) __attribute__((warn_unused_result));
/* Sort by version, then refuse duplicates, gaps (versions run 0001, 0002, …)
 * and transaction control in transactional files; every problem goes to p. */
int migrate_files_check(struct migrate_files *fs, struct problems *p)
    __attribute__((warn_unused_result));
/* Read every entry of dir (dot files are ignored), add and check them. */
int migrate_scan_dir(const char *dir, struct migrate_files *fs, struct problems *p)
    __attribute__((warn_unused_result));
void migrate_files_free(struct migrate_files *fs);
void migrate_applied_free(struct migrate_applied_list *al);

/* Merge files (checked) and applied rows (sorted by version) into one step
 * per version, in version order. Borrows from both. */
void migrate_plan_build(const struct migrate_files *fs, const struct migrate_applied_list *al,
			struct migrate_plan *plan);
size_t migrate_plan_count(const struct migrate_plan *plan, enum migrate_state state);
/* Append one line per step that forbids applying (CHANGED, RENAMED,
 * OUT_OF_ORDER); returns how many. */
size_t migrate_plan_refusals(const struct migrate_plan *plan, struct problems *p);
void migrate_plan_free(struct migrate_plan *plan);
/* The checksum column of `migrate status`: "ok", "changed", "file missing", … */
const char *migrate_state_name(enum migrate_state state);
/* The `migrate status` table. */
void migrate_print_status(const struct migrate_plan *plan, FILE *out);

/* ---- the database ---- */

/* `neonfcgi migrate [--dry-run]` / `migrate status`: output on stdout, errors
 * on stderr; exit status 0 or 1 (also when the database is unreachable). */
int migrate_command(const struct config *cfg, enum migrate_mode mode);
/* MIGRATE_ON_START, in the master before forking: log lines only; waits up to
 * DB_START_TIMEOUT_MS for a database that is down or waking. 0, 1, or
 * MIGRATE_EX_UNAVAILABLE. */
int migrate_on_start(const struct config *cfg);

#endif
