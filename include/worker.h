/* worker: one pre-forked worker process: WORKER_THREADS request threads that
 * accept FastCGI connections on the shared listening socket. */
#ifndef NEONFCGI_WORKER_H
#define NEONFCGI_WORKER_H

#include <stdint.h>

struct config;
struct scoreboard;

/* WORKER_UNDER_MASTER: forked by the master, which stops and respawns it.
 * WORKER_ALONE: the whole process (spawned on fd 0 with WORKERS=1, DESIGN.md
 * §1); it also stops on SIGINT, SIGQUIT and SIGHUP and enforces
 * SHUTDOWN_TIMEOUT_MS and a second stop signal itself. */
enum worker_mode { WORKER_UNDER_MASTER, WORKER_ALONE };

/* Run a worker in scoreboard slot `slot` until told to stop; returns its exit
 * status: EX_CONFIG (<sysexits.h>) when it cannot work with its configuration,
 * which the master does not respawn. started_ms is the instance's start
 * (clock_now_ms()) for uptime. */
int worker_run(const struct config *cfg, int listen_fd, struct scoreboard *sb, int slot,
	       int64_t started_ms, enum worker_mode mode);

#endif
