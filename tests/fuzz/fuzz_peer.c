/* libFuzzer target: the FCGI_WEB_SERVER_ADDRS allow-list (app/peer.c).
 *
 * Input: the list up to the first newline, then peers: a byte whose bit 0
 * picks IPv6 (16 bytes follow) or IPv4 (4 bytes follow), repeated.
 *
 * Oracle, besides ASan/UBSan/LSan: peer_allowed() agrees with a reference
 * written here bit by bit and independently of peer.c (entries split on ','
 * and ' ', "addr" or "addr/len" with 1-3 decimal digits, no bit set past the
 * prefix, IPv4 compared as ::ffff:a.b.c.d); every entry that
 * peer_entry_check() accepts lets in its own network address; a refusal
 * always says why. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "peer.h"
#include "xalloc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int bit_at(const uint8_t *a, unsigned i)
{
	return (a[i / 8] >> (7 - i % 8)) & 1;
}

/* The reference parse of one entry into a 128-bit form and a prefix. */
static bool ref_entry(const char *tok, uint8_t net[16], unsigned *bits)
{
	char addr[64];
	const char *slash = strchr(tok, '/');
	size_t alen = slash ? (size_t)(slash - tok) : strlen(tok);
	uint8_t v4[4];
	bool is4 = false;

	if (alen >= sizeof(addr))
		return false;
	memcpy(addr, tok, alen);
	addr[alen] = '\0';
	if (inet_pton(AF_INET6, addr, net) != 1) {
		if (inet_pton(AF_INET, addr, v4) != 1)
			return false;
		memset(net, 0, 10);
		net[10] = net[11] = 0xff;
		memcpy(net + 12, v4, 4);
		is4 = true;
	}
	*bits = 128;
	if (slash) {
		const char *d = slash + 1;
		size_t n = strlen(d);
		unsigned v = 0;
		if (n < 1 || n > 3)
			return false;
		for (size_t i = 0; i < n; i++) {
			if (d[i] < '0' || d[i] > '9')
				return false;
			v = v * 10 + (unsigned)(d[i] - '0');
		}
		if (v > (is4 ? 32u : 128u))
			return false;
		*bits = v + (is4 ? 96 : 0);
	}
	for (unsigned i = *bits; i < 128; i++)
		if (bit_at(net, i))
			return false;
	return true;
}

static bool ref_allowed(const char *list, const uint8_t peer[16])
{
	char *copy, *save = NULL;
	bool hit = false;
	uint8_t net[16];
	unsigned bits;

	if (list[0] == '\0')
		return true;
	copy = xstrdup(list);
	for (char *tok = strtok_r(copy, ", ", &save); tok && !hit;
	     tok = strtok_r(NULL, ", ", &save)) {
		if (!ref_entry(tok, net, &bits))
			continue;
		hit = true;
		for (unsigned i = 0; i < bits && hit; i++)
			hit = bit_at(net, i) == bit_at(peer, i);
	}
	free(copy);
	return hit;
}

/* Every entry peer_entry_check accepts, the reference accepts too, and the
 * block lets in its own network address. */
static void check_entries(const char *list)
{
	char *copy = xstrdup(list), *save = NULL;
	char why[160];
	uint8_t net[16];
	unsigned bits;

	for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		why[0] = '\0';
		bool ok = peer_entry_check(tok, why, sizeof(why)) == 0;
		if (ok != ref_entry(tok, net, &bits) || (!ok && why[0] == '\0'))
			abort();
		if (!ok || strchr(tok, ' '))
			continue;
		struct sockaddr_in6 sa = { .sin6_family = AF_INET6 };
		memcpy(&sa.sin6_addr, net, 16);
		struct peer_allowlist *one = peer_allowlist_new(tok);
		if (!peer_allowed(one, (struct sockaddr *)&sa))
			abort();
		peer_allowlist_free(one);
	}
	free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nl = memchr(data, '\n', size);
	size_t llen = nl ? (size_t)(nl - data) : size;
	char *list = xstrndup((const char *)data, llen);
	struct peer_allowlist *l = peer_allowlist_new(list);
	const uint8_t *p = nl ? nl + 1 : data + size, *end = data + size;

	check_entries(list);
	while (p < end) {
		bool v6 = *p & 1;
		size_t need = v6 ? 16 : 4;
		struct sockaddr_storage ss;
		uint8_t mapped[16] = { [10] = 0xff, [11] = 0xff };

		if ((size_t)(end - p) < need + 1)
			break;
		memset(&ss, 0, sizeof(ss));
		if (v6) {
			struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
			s6->sin6_family = AF_INET6;
			memcpy(&s6->sin6_addr, p + 1, 16);
			memcpy(mapped, p + 1, 16);
		} else {
			struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
			s4->sin_family = AF_INET;
			memcpy(&s4->sin_addr, p + 1, 4);
			memcpy(mapped + 12, p + 1, 4);
		}
		if (peer_allowed(l, (struct sockaddr *)&ss) != ref_allowed(list, mapped))
			abort();
		p += need + 1;
	}
	peer_allowlist_free(l);
	free(list);
	return 0;
}
