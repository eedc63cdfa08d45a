/* solo: the worker without its master. The scoreboard is still mapped, with
 * one slot, so that /metrics and /health/db read the same sections they
 * read under a master. */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "clock.h"
#include "config.h"
#include "listen.h"
#include "log.h"
#include "dbslots.h"
#include "scoreboard.h"
#include "solo.h"
#include "worker.h"

bool solo_wanted(const struct config *cfg, const struct config_source *src)
{
	return src->spawned && cfg->workers == 1;
}

int solo_run(const struct config *cfg, struct listener *l)
{
	struct scoreboard *sb = scoreboard_init_master();
	int status;

	if (!sb) {
		log_error("cannot map the scoreboard");
		return EXIT_FAILURE;
	}
	/* The bound holds here too (one worker's pool): without it every
	 * connect would wait for a slot that never comes. */
	if (dbslots_init_master(sb, config_db_bound(cfg)) < 0) {
		log_error("cannot set up the connection bound's lock");
		scoreboard_free(sb);
		return EXIT_FAILURE;
	}
	log_info("serving in this process: spawned with WORKERS=1, no master");
	scoreboard_worker_started(sb, 0, (int)getpid(), false);
	status = worker_run(cfg, l->fd, sb, 0, clock_now_ms(), WORKER_ALONE);
	/* fd 0 is the spawner's socket: closed, never unlinked. */
	(void)listen_close(l, false);
	scoreboard_free(sb);
	if (status == 0)
		log_info("stopped");
	return status;
}
