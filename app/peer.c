/* peer: compare a connecting peer against the allow-list, treating an
 * IPv4-mapped IPv6 address (::ffff:a.b.c.d) as the IPv4 address it maps. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "peer.h"
#include "xalloc.h"

struct peer_allowlist {
	struct in6_addr *addrs; /* IPv4 entries stored as v4-mapped */
	size_t n;
};

static void map_v4(const struct in_addr *v4, struct in6_addr *out)
{
	memset(out, 0, sizeof(*out));
	out->s6_addr[10] = 0xff;
	out->s6_addr[11] = 0xff;
	memcpy(&out->s6_addr[12], v4, 4);
}

static bool parse_addr(const char *s, struct in6_addr *out)
{
	struct in_addr v4;

	if (inet_pton(AF_INET6, s, out) == 1)
		return true;
	if (inet_pton(AF_INET, s, &v4) != 1)
		return false;
	map_v4(&v4, out);
	return true;
}

struct peer_allowlist *peer_allowlist_new(const char *list)
{
	if (!list || !*list)
		return NULL;
	struct peer_allowlist *l = xcalloc(1, sizeof(*l));
	char *copy = xstrdup(list), *save = NULL;
	l->addrs = xcalloc(strlen(list) / 2 + 2, sizeof(*l->addrs));
	for (char *tok = strtok_r(copy, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save))
		if (parse_addr(tok, &l->addrs[l->n]))
			l->n++;
	free(copy);
	return l;
}

void peer_allowlist_free(struct peer_allowlist *l)
{
	if (!l)
		return;
	free(l->addrs);
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

bool peer_allowed(const struct peer_allowlist *l, const struct sockaddr *sa)
{
	struct in6_addr a;
	char text[INET6_ADDRSTRLEN];

	if (!l || !to_mapped(sa, &a))
		return true;
	for (size_t i = 0; i < l->n; i++)
		if (memcmp(&l->addrs[i], &a, sizeof(a)) == 0)
			return true;
	inet_ntop(AF_INET6, &a, text, sizeof(text));
	log_warnx("peer refused: not in FCGI_WEB_SERVER_ADDRS peer=%s", text);
	return false;
}
