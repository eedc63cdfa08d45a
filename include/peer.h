/* peer: the FCGI_WEB_SERVER_ADDRS allow-list of addresses and CIDR blocks,
 * for IPv4 and IPv6 peers (libfcgi's own check covers single IPv4 addresses
 * only). Pure: it neither logs nor exits. */
#ifndef NEONFCGI_PEER_H
#define NEONFCGI_PEER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

struct peer_allowlist;

/* One entry: an IPv4 or IPv6 address, or a block "address/prefix" whose
 * address has no bits set past the prefix. 0, or -1 with why filled with
 * what is wrong (without quoting the entry: the caller does). */
int peer_entry_check(const char *entry, char *why, size_t whylen)
    __attribute__((warn_unused_result));
/* NULL or empty list: every peer is allowed. Entries are validated by config
 * (peer_entry_check); one that is not valid is left out. */
struct peer_allowlist *peer_allowlist_new(const char *comma_separated);
void peer_allowlist_free(struct peer_allowlist *l);
/* Unix-socket peers are always allowed; an IPv4-mapped IPv6 peer
 * (::ffff:a.b.c.d) matches the IPv4 blocks that hold a.b.c.d. */
bool peer_allowed(const struct peer_allowlist *l, const struct sockaddr *sa);
/* The peer's address for a log line, an IPv4-mapped one as plain IPv4. */
void peer_name(const struct sockaddr *sa, char *buf, size_t len);

#endif
