/* master: pre-forks the workers, respawns them with crash-loop backoff,
 * recycles them, and handles stop and reload signals (DESIGN.md §1). */
#ifndef NEONFCGI_MASTER_H
#define NEONFCGI_MASTER_H

struct config;
struct config_source;
struct listener;

/* Serve until stopped; takes ownership of cfg (it is replaced on reload and
 * freed on return). Returns the process exit status. */
int master_run(struct config *cfg, const struct config_source *src, struct listener *l);

#endif
