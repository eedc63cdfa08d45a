/* healthflight: one /health/db check in flight per worker, shared by the
 * requests that wait for it (DESIGN.md §5a). A request that arrives while
 * check N runs waits for check N+1, begun after it arrived (the first such
 * waiter starts it when N ends), so every answer reflects a SELECT 1 begun
 * after its request arrived; each request keeps its own deadline. */
#ifndef NEONFCGI_HEALTHFLIGHT_H
#define NEONFCGI_HEALTHFLIGHT_H

#include <stdint.h>

#include "health.h"

/* How a request got its answer. */
enum healthflight_source {
	HEALTHFLIGHT_CHECK,   /* it ran the check itself */
	HEALTHFLIGHT_SHARED,  /* it shared a check another request ran */
	HEALTHFLIGHT_TIMEOUT, /* its deadline passed while it waited for one */
};

/* Runs one check, bounded by deadline_ms (clock_now_ms()), into out. */
typedef void (*healthflight_check_fn)(void *arg, int64_t deadline_ms, struct health_db_check *out);

struct healthflight;

struct healthflight *healthflight_new(healthflight_check_fn check, void *arg);
/* Call once no request can be inside healthflight_run. NULL is fine. */
void healthflight_free(struct healthflight *f);
/* The answer of a check begun after this call, into *out; TIMEOUT leaves
 * *out a timeout failure stamped now. */
enum healthflight_source healthflight_run(struct healthflight *f, int64_t deadline_ms,
					  struct health_db_check *out);
/* Checks started so far (tests and counters). */
uint64_t healthflight_started(struct healthflight *f);

#endif
