/* Unit tests of app/peer.c: which entries FCGI_WEB_SERVER_ADDRS accepts and
 * why it refuses the others (one table), and which peers a list lets in (a
 * second table), IPv4-mapped IPv6 peers against IPv4 blocks included. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

#include "peer.h"

struct entry_case {
	const char *entry;
	const char *why; /* NULL: valid; else a substring of the reason */
};

static const struct entry_case entries[] = {
	{ "127.0.0.1", NULL },
	{ "::1", NULL },
	{ "10.0.0.0/8", NULL },
	{ "10.1.2.3/32", NULL },
	{ "0.0.0.0/0", NULL },
	{ "192.168.1.128/25", NULL },
	{ "fd00::/8", NULL },
	{ "2001:db8::/32", NULL },
	{ "2001:db8::1/128", NULL },
	{ "::/0", NULL },
	{ "::ffff:10.0.0.0/104", NULL },
	{ "fe80::/10", NULL },
	/* host bits past the prefix: refused, with the block spelled out */
	{ "10.0.0.1/8", "write 10.0.0.0/8 for the block" },
	{ "192.168.1.129/25", "write 192.168.1.128/25" },
	{ "10.255.255.255/0", "write 0.0.0.0/0" },
	{ "fd00::1/8", "write fd00::/8" },
	{ "2001:db8:1::/31", "write 2001:db8::/31" },
	{ "fe80::1/10", "has address bits set past its prefix" },
	/* prefix lengths */
	{ "10.0.0.0/33", "must be /0 to /32 for an IPv4 block" },
	{ "fd00::/129", "must be /0 to /128 for an IPv6 block" },
	{ "10.0.0.0/", "bad prefix length" },
	{ "10.0.0.0/-1", "bad prefix length" },
	{ "10.0.0.0/+8", "bad prefix length" },
	{ "10.0.0.0/ 8", "bad prefix length" },
	{ "10.0.0.0/8 ", "bad prefix length" },
	{ "10.0.0.0/0008", "bad prefix length" },
	{ "10.0.0.0/8/8", "bad prefix length" },
	{ "10.0.0.0/0x8", "bad prefix length" },
	{ "10.0.0.0/255.0.0.0", "bad prefix length" },
	/* not addresses */
	{ "", "not an IP address or CIDR block" },
	{ "/8", "not an IP address or CIDR block" },
	{ "10.0.0", "not an IP address or CIDR block" },
	{ "10.0.0.0.0/8", "not an IP address or CIDR block" },
	{ "web1.internal", "not an IP address or CIDR block" },
	{ "web1.internal/24", "not an IP address or CIDR block" },
	{ " 10.0.0.1", "not an IP address or CIDR block" },
	{ "fe80::1%eth0", "not an IP address or CIDR block" },
	{ "[::1]", "not an IP address or CIDR block" },
	{ "1234:5678:9abc:def0:1234:5678:9abc:def0:1234/64", "not an IP address or CIDR block" },
};

static void test_entries(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(entries) / sizeof(entries[0]); i++) {
		const struct entry_case *c = &entries[i];
		char why[160] = "";
		int rc = peer_entry_check(c->entry, why, sizeof(why));

		print_message("entry %zu: \"%s\" -> %d %s\n", i, c->entry, rc, why);
		if (c->why == NULL) {
			assert_int_equal(rc, 0);
		} else {
			assert_int_equal(rc, -1);
			assert_non_null(strstr(why, c->why));
		}
	}
}

struct match_case {
	const char *list;
	const char *peer; /* IPv4 or IPv6 text */
	bool allowed;
};

#define WEB "10.0.0.0/8,fd00::/8,127.0.0.1"

static const struct match_case matches[] = {
	{ WEB, "10.0.0.1", true },
	{ WEB, "10.255.255.255", true },
	{ WEB, "11.0.0.1", false },
	{ WEB, "9.255.255.255", false },
	{ WEB, "127.0.0.1", true },
	{ WEB, "127.0.0.2", false },
	{ WEB, "fd12:3456::1", true },
	{ WEB, "fe00::1", false },
	{ WEB, "fc00::1", false },
	/* IPv4-mapped IPv6 peers (a dual-stack listener) match IPv4 entries */
	{ WEB, "::ffff:10.1.2.3", true },
	{ WEB, "::ffff:127.0.0.1", true },
	{ WEB, "::ffff:11.1.2.3", false },
	/* ... but an IPv4 block is not an IPv6 block of the same bits */
	{ WEB, "a00::1", false },
	{ WEB, "::10.1.2.3", false },
	/* bit boundaries inside a byte */
	{ "192.168.1.128/25", "192.168.1.128", true },
	{ "192.168.1.128/25", "192.168.1.255", true },
	{ "192.168.1.128/25", "192.168.1.127", false },
	{ "172.16.0.0/12", "172.31.255.255", true },
	{ "172.16.0.0/12", "172.32.0.0", false },
	{ "172.16.0.0/12", "172.15.255.255", false },
	{ "2001:db8::/31", "2001:db9:ffff::1", true },
	{ "2001:db8::/31", "2001:dba::1", false },
	/* whole spaces */
	{ "0.0.0.0/0", "203.0.113.9", true },
	{ "0.0.0.0/0", "::ffff:203.0.113.9", true },
	{ "0.0.0.0/0", "2001:db8::1", false },
	{ "::/0", "2001:db8::1", true },
	{ "::/0", "203.0.113.9", true },
	/* single addresses, the form from before blocks */
	{ "10.0.0.1,10.0.0.2,::1", "10.0.0.2", true },
	{ "10.0.0.1,10.0.0.2,::1", "10.0.0.3", false },
	{ "10.0.0.1,10.0.0.2,::1", "::1", true },
	{ "10.0.0.1,10.0.0.2,::1", "::2", false },
	/* an IPv6 form of an IPv4 block */
	{ "::ffff:10.0.0.0/104", "10.9.8.7", true },
	{ "::ffff:10.0.0.0/104", "11.9.8.7", false },
	/* an invalid entry (config refuses it) lets nobody in */
	{ "10.0.0.1/8", "10.0.0.1", false },
	{ "10.0.0.1/8,10.0.0.2", "10.0.0.2", true },
};

/* peer text -> sockaddr of its family */
static void to_sockaddr(const char *text, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (strchr(text, ':')) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
		s6->sin6_family = AF_INET6;
		assert_int_equal(inet_pton(AF_INET6, text, &s6->sin6_addr), 1);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
		s4->sin_family = AF_INET;
		assert_int_equal(inet_pton(AF_INET, text, &s4->sin_addr), 1);
	}
}

static void test_matches(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(matches) / sizeof(matches[0]); i++) {
		const struct match_case *c = &matches[i];
		struct sockaddr_storage ss;
		struct peer_allowlist *l = peer_allowlist_new(c->list);

		print_message("match %zu: %s in %s\n", i, c->peer, c->list);
		to_sockaddr(c->peer, &ss);
		assert_non_null(l);
		assert_int_equal(peer_allowed(l, (struct sockaddr *)&ss), c->allowed);
		peer_allowlist_free(l);
	}
}

static void test_no_list_allows_everyone(void **state)
{
	struct sockaddr_storage ss;

	(void)state;
	to_sockaddr("203.0.113.9", &ss);
	assert_null(peer_allowlist_new(NULL));
	assert_null(peer_allowlist_new(""));
	assert_true(peer_allowed(NULL, (struct sockaddr *)&ss));
}

static void test_unix_peers_are_allowed(void **state)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct peer_allowlist *l = peer_allowlist_new("10.0.0.1");

	(void)state;
	assert_true(peer_allowed(l, (struct sockaddr *)&sun));
	peer_allowlist_free(l);
}

static void test_peer_name(void **state)
{
	static const struct {
		const char *in, *out;
	} names[] = {
		{ "10.1.2.3", "10.1.2.3" },
		{ "::ffff:10.1.2.3", "10.1.2.3" },
		{ "fd00::1", "fd00::1" },
	};
	struct sockaddr_storage ss;
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	char buf[64];

	(void)state;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		to_sockaddr(names[i].in, &ss);
		peer_name((struct sockaddr *)&ss, buf, sizeof(buf));
		assert_string_equal(buf, names[i].out);
	}
	peer_name((struct sockaddr *)&sun, buf, sizeof(buf));
	assert_string_equal(buf, "unix");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_entries),
		cmocka_unit_test(test_matches),
		cmocka_unit_test(test_no_list_allows_everyone),
		cmocka_unit_test(test_unix_peers_are_allowed),
		cmocka_unit_test(test_peer_name),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
