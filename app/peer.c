/* peer: compare a connecting peer against the allow-list. Every entry is
 * kept as an IPv6 block; an IPv4 one as its IPv4-mapped form (::ffff:a.b.c.d,
 * prefix + 96), so that an IPv4 peer, or an IPv4-mapped IPv6 peer of a
 * dual-stack socket, is one comparison against either kind of entry. */
#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peer.h"
#include "xalloc.h"

#define V4_MAPPED_BITS 96 /* ::ffff:0:0/96 holds the IPv4 addresses */

struct peer_block {
	struct in6_addr net;
	unsigned bits; /* prefix length over the 128-bit form */
};

struct peer_allowlist {
	struct peer_block *blocks;
	size_t n;
};

static void map_v4(const struct in_addr *v4, struct in6_addr *out)
{
	memset(out, 0, sizeof(*out));
	out->s6_addr[10] = 0xff;
	out->s6_addr[11] = 0xff;
	memcpy(&out->s6_addr[12], v4, 4);
}

/* "a.b.c.d" or an IPv6 address; *v4 says which. */
static bool parse_addr(const char *s, struct in6_addr *out, bool *v4)
{
	struct in_addr a4;

	*v4 = false;
	if (inet_pton(AF_INET6, s, out) == 1)
		return true;
	if (inet_pton(AF_INET, s, &a4) != 1)
		return false;
	map_v4(&a4, out);
	*v4 = true;
	return true;
}

/* Decimal digits only: no sign, no blanks, at most three of them. */
static int parse_prefix(const char *s, unsigned max, unsigned *out)
{
	size_t len = strlen(s);

	if (len == 0 || len > 3)
		return -1;
	for (size_t i = 0; i < len; i++)
		if (!isdigit((unsigned char)s[i]))
			return -1;
	*out = (unsigned)strtoul(s, NULL, 10);
	return *out <= max ? 0 : -1;
}

static uint8_t byte_mask(unsigned bits)
{
	return (uint8_t)(0xffu << (8 - bits));
}

/* The block's address with every bit past the prefix cleared. */
static void network_of(const struct peer_block *b, struct in6_addr *net)
{
	unsigned full = b->bits / 8, rest = b->bits % 8;

	*net = b->net;
	if (full < sizeof(net->s6_addr)) {
		net->s6_addr[full] &= rest ? byte_mask(rest) : 0;
		memset(&net->s6_addr[full + 1], 0, sizeof(net->s6_addr) - full - 1);
	}
}

static void format_block(const struct in6_addr *net, bool v4, unsigned bits, char *buf, size_t len)
{
	char text[INET6_ADDRSTRLEN];

	inet_ntop(v4 ? AF_INET : AF_INET6, v4 ? (const void *)&net->s6_addr[12] : (const void *)net,
		  text, sizeof(text));
	snprintf(buf, len, "%s/%u", text, v4 ? bits - V4_MAPPED_BITS : bits);
}

/* An address with bits set past the prefix is refused, not normalized:
 * "10.0.0.1/8" may mean the /8 or the one host, and guessing wrong widens
 * or narrows who may send requests (PostgreSQL's cidr type refuses it too;
 * nginx's allow only warns). */
static int parse_block(const char *entry, struct peer_block *out, char *why, size_t whylen)
{
	char addr[INET6_ADDRSTRLEN], suggestion[INET6_ADDRSTRLEN + 8];
	const char *slash = strchr(entry, '/');
	size_t alen = slash ? (size_t)(slash - entry) : strlen(entry);
	struct in6_addr net;
	bool v4;

	if (alen >= sizeof(addr))
		goto not_ip;
	memcpy(addr, entry, alen);
	addr[alen] = '\0';
	if (!parse_addr(addr, &out->net, &v4))
		goto not_ip;
	out->bits = 128;
	if (slash == NULL)
		return 0;
	if (parse_prefix(slash + 1, v4 ? 32 : 128, &out->bits) < 0) {
		snprintf(why, whylen, "has a bad prefix length: must be /0 to /%d for an %s block",
			 v4 ? 32 : 128, v4 ? "IPv4" : "IPv6");
		return -1;
	}
	if (v4)
		out->bits += V4_MAPPED_BITS;
	network_of(out, &net);
	if (memcmp(&net, &out->net, sizeof(net)) == 0)
		return 0;
	format_block(&net, v4, out->bits, suggestion, sizeof(suggestion));
	snprintf(why, whylen,
		 "has address bits set past its prefix: write %s for the block, or the address "
		 "alone for one host",
		 suggestion);
	return -1;
not_ip:
	snprintf(why, whylen, "is not an IP address or CIDR block");
	return -1;
}

int peer_entry_check(const char *entry, char *why, size_t whylen)
{
	struct peer_block b;

	return parse_block(entry, &b, why, whylen);
}

struct peer_allowlist *peer_allowlist_new(const char *list)
{
	char why[160];

	if (!list || !*list)
		return NULL;
	struct peer_allowlist *l = xcalloc(1, sizeof(*l));
	char *copy = xstrdup(list), *save = NULL;
	l->blocks = xcalloc(strlen(list) / 2 + 2, sizeof(*l->blocks));
	for (char *tok = strtok_r(copy, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save))
		if (parse_block(tok, &l->blocks[l->n], why, sizeof(why)) == 0)
			l->n++;
	free(copy);
	return l;
}

void peer_allowlist_free(struct peer_allowlist *l)
{
	if (!l)
		return;
	free(l->blocks);
	free(l);
}

static bool to_mapped(const struct sockaddr *sa, struct in6_addr *out)
{
	if (sa->sa_family == AF_INET6) {
		*out = ((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
		return true;
	}
	if (sa->sa_family != AF_INET)
		return false;
	map_v4(&((const struct sockaddr_in *)(const void *)sa)->sin_addr, out);
	return true;
}

static bool in_block(const struct peer_block *b, const struct in6_addr *a)
{
	unsigned full = b->bits / 8, rest = b->bits % 8;

	if (memcmp(a->s6_addr, b->net.s6_addr, full) != 0)
		return false;
	return rest == 0 || (a->s6_addr[full] & byte_mask(rest)) == b->net.s6_addr[full];
}

bool peer_allowed(const struct peer_allowlist *l, const struct sockaddr *sa)
{
	struct in6_addr a;

	if (!l || !to_mapped(sa, &a))
		return true;
	for (size_t i = 0; i < l->n; i++)
		if (in_block(&l->blocks[i], &a))
			return true;
	return false;
}

void peer_name(const struct sockaddr *sa, char *buf, size_t len)
{
	struct in6_addr a;

	if (len == 0)
		return;
	buf[0] = '\0';
	if (!to_mapped(sa, &a)) {
		snprintf(buf, len, "unix");
		return;
	}
	if (IN6_IS_ADDR_V4MAPPED(&a))
		inet_ntop(AF_INET, &a.s6_addr[12], buf, (socklen_t)len);
	else
		inet_ntop(AF_INET6, &a, buf, (socklen_t)len);
}
