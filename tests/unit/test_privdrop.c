/* Unit tests of app/privdrop.c. Each case runs in a child process, since a
 * drop cannot be undone: as root, RUN_USER=nobody leaves every id nobody's
 * and root out of reach; root without RUN_USER, or with RUN_USER=root,
 * stays root; not root, RUN_USER or RUN_GROUP naming someone else is refused
 * with a message, naming the process's own user is fine. Skipped unless
 * run as root (the non-root cases start as root and drop first). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "privdrop.h"

struct outcome {
	int rc;
	int result;
	uid_t ruid, euid, suid;
	gid_t rgid, egid, sgid;
	int ngroups;
	int root_back; /* setuid(0) succeeded afterwards */
	char err[400];
};

static void setup_cfg(struct config *cfg, const char *user, const char *group)
{
	struct passwd *pw = user ? getpwnam(user) : NULL;
	struct group *gr = group ? getgrnam(group) : NULL;

	memset(cfg, 0, sizeof(*cfg));
	cfg->run_user = (char *)user;
	cfg->run_group = (char *)group;
	cfg->run_uid = pw ? pw->pw_uid : (uid_t)-1;
	cfg->run_gid = gr ? gr->gr_gid : pw ? pw->pw_gid : (gid_t)-1;
}

/* Run fn in a child (as nobody first when as_nobody) and bring back what
 * it saw. */
static void in_child(const struct config *cfg, bool as_nobody, bool check, struct outcome *o)
{
	int fds[2], status;

	assert_int_equal(pipe(fds), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct outcome r = { 0 };
		enum privdrop_result res = PRIVDROP_NOT_ROOT;

		close(fds[0]);
		if (as_nobody && (setgroups(0, NULL) < 0 || setgid(65534) < 0 || setuid(65534) < 0))
			_exit(3);
		if (check)
			r.rc = privdrop_check(cfg, r.err, sizeof(r.err));
		else
			r.rc = privdrop_apply(cfg, &res, r.err, sizeof(r.err));
		r.result = (int)res;
		getresuid(&r.ruid, &r.euid, &r.suid);
		getresgid(&r.rgid, &r.egid, &r.sgid);
		r.ngroups = getgroups(0, NULL);
		r.root_back = setuid(0) == 0;
		if (write(fds[1], &r, sizeof(r)) != (ssize_t)sizeof(r))
			_exit(4);
		_exit(0);
	}
	close(fds[1]);
	assert_int_equal(read(fds[0], o, sizeof(*o)), (ssize_t)sizeof(*o));
	close(fds[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static int need_root(void **state)
{
	(void)state;
	if (geteuid() != 0)
		skip();
	return 0;
}

static void root_drops_to_run_user_for_good(void **state)
{
	struct config cfg;
	struct outcome o;
	struct passwd *pw = getpwnam("nobody");

	(void)state;
	setup_cfg(&cfg, "nobody", "daemon");
	in_child(&cfg, false, false, &o);
	assert_int_equal(o.rc, 0);
	assert_int_equal(o.result, PRIVDROP_DROPPED);
	assert_int_equal(o.ruid, pw->pw_uid);
	assert_int_equal(o.euid, pw->pw_uid);
	assert_int_equal(o.suid, pw->pw_uid);
	assert_int_equal(o.rgid, 1);
	assert_int_equal(o.egid, 1);
	assert_int_equal(o.sgid, 1);
	assert_false(o.root_back);
	/* a uid nobody has: only RUN_GROUP as a supplementary group */
	setup_cfg(&cfg, NULL, NULL);
	cfg.run_user = (char *)"4000000";
	cfg.run_uid = 4000000;
	cfg.run_gid = 4000001;
	in_child(&cfg, false, false, &o);
	assert_int_equal(o.rc, 0);
	assert_int_equal(o.euid, 4000000);
	assert_int_equal(o.egid, 4000001);
	assert_int_equal(o.ngroups, 1);
	assert_false(o.root_back);
}

static void root_without_run_user_stays_root(void **state)
{
	struct config cfg;
	struct outcome o;

	(void)state;
	setup_cfg(&cfg, NULL, NULL);
	in_child(&cfg, false, false, &o);
	assert_int_equal(o.rc, 0);
	assert_int_equal(o.result, PRIVDROP_STAYED_ROOT);
	assert_int_equal(o.euid, 0);
	setup_cfg(&cfg, "root", NULL);
	in_child(&cfg, false, false, &o);
	assert_int_equal(o.rc, 0);
	assert_int_equal(o.result, PRIVDROP_ROOT_ON_PURPOSE);
	assert_int_equal(o.euid, 0);
}

static void not_root_must_already_be_run_user(void **state)
{
	struct config cfg;
	struct outcome o;

	(void)state;
	setup_cfg(&cfg, "daemon", NULL);
	in_child(&cfg, true, true, &o);
	assert_int_equal(o.rc, -1);
	assert_string_equal(o.err,
			    "RUN_USER=\"daemon\": cannot switch to it: not started as root "
			    "(running as nobody, uid 65534); start as root, or unset RUN_USER");
	setup_cfg(&cfg, "nobody", "daemon");
	in_child(&cfg, true, true, &o);
	assert_int_equal(o.rc, -1);
	assert_string_equal(o.err, "RUN_GROUP=\"daemon\": cannot switch to it: not started as root "
				   "(running as gid 65534); start as root, or unset RUN_GROUP");
	/* the process's own user and group, or no RUN_USER: fine, nothing done */
	setup_cfg(&cfg, "nobody", NULL);
	in_child(&cfg, true, true, &o);
	assert_int_equal(o.rc, 0);
	in_child(&cfg, true, false, &o);
	assert_int_equal(o.rc, 0);
	assert_int_equal(o.result, PRIVDROP_NOT_ROOT);
	setup_cfg(&cfg, NULL, NULL);
	in_child(&cfg, true, true, &o);
	assert_int_equal(o.rc, 0);
	/* as root, the check lets everything through to the drop */
	setup_cfg(&cfg, "daemon", NULL);
	in_child(&cfg, false, true, &o);
	assert_int_equal(o.rc, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(root_drops_to_run_user_for_good, need_root),
		cmocka_unit_test_setup(root_without_run_user_stays_root, need_root),
		cmocka_unit_test_setup(not_root_must_already_be_run_user, need_root),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
