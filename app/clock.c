/* clock: the sleeping and wall-clock half; the monotonic readers are inline
 * in clock.h because they sit on every request's path. */
#include <errno.h>
#include <stdio.h>

#include "clock.h"

int64_t clock_real_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void clock_sleep_ms(int64_t ms)
{
	int64_t until = clock_now_ms() + (ms > 0 ? ms : 0);
	struct timespec ts = { .tv_sec = until / 1000, .tv_nsec = (until % 1000) * 1000000 };

	/* An absolute deadline: resuming after EINTR does not restart the wait. */
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

void clock_rfc3339(int64_t real_ms, char *buf, size_t len)
{
	time_t secs = (time_t)(real_ms / 1000);
	struct tm tm;
	size_t n;

	if (len == 0)
		return;
	gmtime_r(&secs, &tm);
	n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
	if (n == 0) {
		buf[0] = '\0';
		return;
	}
	snprintf(buf + n, len - n, ".%03dZ", (int)(real_ms % 1000));
}
