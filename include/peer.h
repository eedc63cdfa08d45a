/* peer: the FCGI_WEB_SERVER_ADDRS allow-list, for IPv4 and IPv6 peers
 * (libfcgi's own check covers IPv4 only). */
#ifndef NEONFCGI_PEER_H
#define NEONFCGI_PEER_H

#include <stdbool.h>
#include <sys/socket.h>

struct peer_allowlist;

/* NULL or empty list: every peer is allowed. Entries are validated by config. */
struct peer_allowlist *peer_allowlist_new(const char *comma_separated);
void peer_allowlist_free(struct peer_allowlist *l);
/* Unix-socket peers are always allowed; a refused TCP peer is logged. */
bool peer_allowed(const struct peer_allowlist *l, const struct sockaddr *sa);

#endif
