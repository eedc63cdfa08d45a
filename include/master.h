/* master: pre-forks the workers, respawns them with crash-loop backoff,
 * recycles them, and handles stop and reload signals (DESIGN.md §1). */
#ifndef NEONFCGI_MASTER_H
#define NEONFCGI_MASTER_H

struct config;
struct config_source;
struct listener;

/* Serve until stopped; returns the process exit status. *cfg stays the
 * caller's: a valid reload replaces it (destroying the old one), and the
 * caller destroys whichever is there on return. */
int master_run(struct config **cfg, const struct config_source *src, struct listener *l);

#endif
