/* privdrop: supplementary groups (the user's, by initgroups, or only
 * RUN_GROUP for a uid without a password entry), then the group, then the
 * user, each real, effective and saved, so that nothing is left to switch
 * back to; then proof that root cannot be regained. */
#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "account.h"
#include "config.h"
#include "privdrop.h"

int privdrop_check(const struct config *cfg, char *err, size_t errlen)
{
	char name[256];

	if (geteuid() == 0 || cfg->run_user == NULL)
		return 0;
	if (geteuid() != cfg->run_uid) {
		(void)account_user_name(geteuid(), name, sizeof(name));
		snprintf(err, errlen,
			 "RUN_USER=\"%s\": cannot switch to it: not started as root (running as "
			 "%s, uid %lu); start as root, or unset RUN_USER",
			 cfg->run_user, name, (unsigned long)geteuid());
		return -1;
	}
	if (cfg->run_group != NULL && getegid() != cfg->run_gid) {
		snprintf(err, errlen,
			 "RUN_GROUP=\"%s\": cannot switch to it: not started as root (running as "
			 "gid %lu); start as root, or unset RUN_GROUP",
			 cfg->run_group, (unsigned long)getegid());
		return -1;
	}
	return 0;
}

static int set_groups(uid_t uid, gid_t gid, char *err, size_t errlen)
{
	char name[256];
	int rc;

	if (account_user_name(uid, name, sizeof(name)) == 0)
		rc = initgroups(name, gid);
	else
		rc = setgroups(1, &gid);
	if (rc == 0)
		return 0;
	snprintf(err, errlen, "cannot set the supplementary groups of %s: %s", name,
		 strerror(errno));
	return -1;
}

/* Every id is the new one, and asking for root back fails. */
static int verify(uid_t uid, gid_t gid, char *err, size_t errlen)
{
	uid_t ru, eu, su;
	gid_t rg, eg, sg;

	if (getresuid(&ru, &eu, &su) < 0 || getresgid(&rg, &eg, &sg) < 0 || ru != uid ||
	    eu != uid || su != uid || rg != gid || eg != gid || sg != gid) {
		snprintf(err, errlen, "the switch to uid %lu gid %lu did not take",
			 (unsigned long)uid, (unsigned long)gid);
		return -1;
	}
	if (setuid(0) == 0 || seteuid(0) == 0 ||
	    (gid != 0 && (setgid(0) == 0 || setegid(0) == 0))) {
		snprintf(err, errlen, "root could be regained after switching to uid %lu",
			 (unsigned long)uid);
		return -1;
	}
	return 0;
}

static int drop(uid_t uid, gid_t gid, char *err, size_t errlen)
{
	if (set_groups(uid, gid, err, errlen) < 0)
		return -1;
	if (setresgid(gid, gid, gid) < 0) {
		snprintf(err, errlen, "cannot switch to gid %lu: %s", (unsigned long)gid,
			 strerror(errno));
		return -1;
	}
	if (setresuid(uid, uid, uid) < 0) {
		snprintf(err, errlen, "cannot switch to uid %lu: %s", (unsigned long)uid,
			 strerror(errno));
		return -1;
	}
	return verify(uid, gid, err, errlen);
}

int privdrop_apply(const struct config *cfg, enum privdrop_result *result, char *err, size_t errlen)
{
	if (geteuid() != 0) {
		*result = PRIVDROP_NOT_ROOT;
		return 0;
	}
	if (cfg->run_user == NULL) {
		*result = PRIVDROP_STAYED_ROOT;
		return 0;
	}
	if (cfg->run_uid == 0) {
		*result = PRIVDROP_ROOT_ON_PURPOSE;
		return 0;
	}
	*result = PRIVDROP_DROPPED;
	return drop(cfg->run_uid, cfg->run_gid, err, errlen);
}
