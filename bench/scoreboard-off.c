/* Linked into build/bench/neonfcgi-nosb only, with -Wl,--wrap=scoreboard_request:
 * the product with its per-request scoreboard writes removed, for the bench's
 * A/B of what the scoreboard costs on /health (issue 4). Everything else, the
 * request timing included, is the product's own code. */
#include <stdint.h>

#include "scoreboard.h"

void __wrap_scoreboard_request(struct sb_slot *slot, enum route r, int status, int64_t us);

void __wrap_scoreboard_request(struct sb_slot *slot, enum route r, int status, int64_t us)
{
	(void)slot;
	(void)r;
	(void)status;
	(void)us;
}
