/* clock: monotonic milliseconds (the unit of every deadline in the program),
 * sleeping, and wall-clock time as RFC 3339 text. */
#ifndef NEONFCGI_CLOCK_H
#define NEONFCGI_CLOCK_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define CLOCK_RFC3339_LEN 32 /* "2026-12-05T09:53:55.123Z" and its NUL, with room */

static inline int64_t clock_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline int64_t clock_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Wall-clock milliseconds since the epoch (for timestamps, never deadlines). */
int64_t clock_real_ms(void);
/* Sleep the whole ms: a signal handler that runs meanwhile does not shorten it
 * (callers that must react to a signal poll with their own timeouts). */
void clock_sleep_ms(int64_t ms);
/* real_ms as UTC RFC 3339 with milliseconds ("…T09:53:55.123Z"); always
 * NUL-terminates buf (len >= CLOCK_RFC3339_LEN gives the whole text). */
void clock_rfc3339(int64_t real_ms, char *buf, size_t len);

#endif
