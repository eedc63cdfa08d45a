/* Unit tests of app/account.c: names and numbers for users and groups, one
 * table each, against the system's own databases (root, nobody, daemon and
 * nogroup exist on every Debian system). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>

#include "account.h"

struct user_case {
	const char *spec;
	const char *same_as; /* a name getpwnam knows, or NULL */
	long uid, primary;   /* when same_as is NULL; primary -1: ACCOUNT_NO_GID */
	const char *why;     /* NULL: found */
};

static const struct user_case users[] = {
	{ "root", "root", 0, 0, NULL },
	{ "nobody", "nobody", 0, 0, NULL },
	{ "0", "root", 0, 0, NULL },
	{ "65534", "nobody", 0, 0, NULL },
	{ "4000000", NULL, 4000000, -1, NULL },
	{ "4294967294", NULL, 4294967294L, -1, NULL },
	{ "4294967295", NULL, 0, 0, "is out of range: a uid is 0 to 4294967294" },
	{ "99999999999999999999999", NULL, 0, 0, "is out of range" },
	{ "no-such-user-nfc", NULL, 0, 0, "no such user (a name from the password database" },
	{ "", NULL, 0, 0, "no such user" },
	{ "-1", NULL, 0, 0, "no such user" },
	{ "+0", NULL, 0, 0, "no such user" },
	{ " root", NULL, 0, 0, "no such user" },
};

static void test_users(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(users) / sizeof(users[0]); i++) {
		const struct user_case *c = &users[i];
		char why[160] = "";
		uid_t uid = 12345;
		gid_t gid = 12345;
		int rc = account_user(c->spec, &uid, &gid, why, sizeof(why));

		print_message("user %zu: \"%s\" -> %d %s\n", i, c->spec, rc, why);
		if (c->why) {
			assert_int_equal(rc, -1);
			assert_non_null(strstr(why, c->why));
			continue;
		}
		assert_int_equal(rc, 0);
		if (c->same_as) {
			struct passwd *pw = getpwnam(c->same_as);
			assert_non_null(pw);
			assert_int_equal(uid, pw->pw_uid);
			assert_int_equal(gid, pw->pw_gid);
		} else {
			assert_int_equal(uid, (uid_t)c->uid);
			assert_int_equal(gid, c->primary < 0 ? ACCOUNT_NO_GID : (gid_t)c->primary);
		}
	}
}

struct group_case {
	const char *spec;
	const char *same_as;
	long gid;
	const char *why;
};

static const struct group_case groups[] = {
	{ "root", "root", 0, NULL },
	{ "daemon", "daemon", 0, NULL },
	{ "nogroup", "nogroup", 0, NULL },
	{ "1", "daemon", 0, NULL },
	{ "4000001", NULL, 4000001, NULL },
	{ "4294967295", NULL, 0, "is out of range: a gid is 0 to 4294967294" },
	{ "no-such-group-nfc", NULL, 0, "no such group (a name from the group database" },
	{ "daemon ", NULL, 0, "no such group" },
};

static void test_groups(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(groups) / sizeof(groups[0]); i++) {
		const struct group_case *c = &groups[i];
		char why[160] = "";
		gid_t gid = 12345;
		int rc = account_group(c->spec, &gid, why, sizeof(why));

		print_message("group %zu: \"%s\" -> %d %s\n", i, c->spec, rc, why);
		if (c->why) {
			assert_int_equal(rc, -1);
			assert_non_null(strstr(why, c->why));
		} else if (c->same_as) {
			assert_int_equal(rc, 0);
			assert_int_equal(gid, getgrnam(c->same_as)->gr_gid);
		} else {
			assert_int_equal(rc, 0);
			assert_int_equal(gid, (gid_t)c->gid);
		}
	}
}

static void test_user_name(void **state)
{
	char buf[64];

	(void)state;
	assert_int_equal(account_user_name(0, buf, sizeof(buf)), 0);
	assert_string_equal(buf, "root");
	assert_int_equal(account_user_name(4000000, buf, sizeof(buf)), -1);
	assert_string_equal(buf, "#4000000");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_users),
		cmocka_unit_test(test_groups),
		cmocka_unit_test(test_user_name),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
