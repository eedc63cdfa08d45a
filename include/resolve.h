/* resolve: host names resolved within a deadline (DESIGN.md §5, "Name
 * resolution is inside the deadline"). libpq 15 resolves inside
 * PQconnectStartParams, blocking and unbounded; resolving here first and
 * handing libpq `hostaddr` next to `host` bounds the wait, while TLS SNI and
 * verify-full still see the name. Each lookup runs on a thread that is
 * abandoned at the deadline and frees its state itself when getaddrinfo
 * returns (glibc gives up after resolv.conf's timeout × attempts); finished
 * threads are joined by the next lookup or by resolve_drain(). A lookup still
 * in flight when the process exits is left to the exit.
 * Pure: failures are reported in err, whose text never holds the host name. */
#ifndef NEONFCGI_RESOLVE_H
#define NEONFCGI_RESOLVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum resolve_status {
	RESOLVE_OK = 0,
	RESOLVE_TIMEOUT,   /* err: "timed out resolving host name" */
	RESOLVE_NOT_FOUND, /* err: "could not resolve host name: <why>" */
};

/* Numeric addresses ("192.0.2.1", "2001:db8::1") in getaddrinfo's order. */
struct resolve_addrs {
	char **addr;
	size_t n;
};

/* The addresses of host (AF_UNSPEC, SOCK_STREAM), without duplicates, by
 * deadline_ms (clock_now_ms()). A literal address is answered at once, with
 * no thread. On failure *out is empty. */
enum resolve_status resolve_host(const char *host, int64_t deadline_ms, struct resolve_addrs *out,
				 char *err, size_t errlen) __attribute__((warn_unused_result));
void resolve_addrs_free(struct resolve_addrs *a);

/* What to hand libpq for the keywords host, hostaddr and port. A NULL field
 * means: leave that keyword as the connection has it (absent stays absent). */
struct resolve_params {
	char *host;
	char *hostaddr;
	char *port;
	size_t unresolved; /* names left out of the lists because they failed */
};

/* Rewrite a connection's host/hostaddr/port (each NULL when not set; the
 * caller passes PGHOST and the like itself if it wants them) so that libpq
 * resolves nothing: every host name in the comma-separated list becomes one
 * entry per address, in order, with hostaddr and port lists that line up
 * (a single port stays single). Unix-socket directories and literal addresses
 * pass through (hostaddr entry empty resp. the literal). The names are looked
 * up in parallel until the deadline, but once some entry is usable the rest
 * get at most RESOLVE_STRAGGLER_MS more, so one silent name does not spend a
 * whole attempt that could connect elsewhere. Names that fail are left out
 * (err then says why the first one failed); when none is left the call fails.
 * Untouched (all NULL, RESOLVE_OK): hostaddr already set, host unset, no
 * entry is a name, or the port list does not match (libpq reports that). */
enum resolve_status resolve_params(const char *host, const char *hostaddr, const char *port,
				   int64_t deadline_ms, struct resolve_params *out, char *err,
				   size_t errlen) __attribute__((warn_unused_result));
void resolve_params_free(struct resolve_params *p);

/* A resolver that works answers well within this; it is a fifth of the
 * default DB_CONNECT_TIMEOUT_MS, leaving the rest to connect. */
#define RESOLVE_STRAGGLER_MS 1000

/* Resolver threads started since the process began, and those still running
 * (abandoned ones included): for tests and metrics. */
uint64_t resolve_threads_started(void);
uint64_t resolve_threads_running(void);
/* Wait until no resolver thread runs or deadline_ms passes, and join those
 * that have finished; true when none is left (before a clean exit). */
bool resolve_drain(int64_t deadline_ms);

#endif
