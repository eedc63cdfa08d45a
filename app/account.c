/* account: lookups through getpwnam_r/getgrnam_r and friends, with a buffer
 * that grows on ERANGE (a group with many members needs more than
 * _SC_GETGR_R_SIZE_MAX says on some systems). */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "account.h"
#include "xalloc.h"

#define BUF_FIRST 4096
#define BUF_MAX   (1 << 20)
#define ID_MAX    4294967294UL /* (uid_t)-1 means "no change" to chown */

/* Digits only, within ID_MAX: a number, not a name. */
static bool parse_id(const char *s, unsigned long *id)
{
	char *end;

	if (s[0] < '0' || s[0] > '9')
		return false;
	errno = 0;
	*id = strtoul(s, &end, 10);
	return errno == 0 && *end == '\0' && *id <= ID_MAX;
}

/* Non-empty, digits only: meant as a number, in range or not. */
static bool is_number(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return false;
	return true;
}

/* getpwnam_r (name set) or getpwuid_r: 0 found, -1 with errno (0 when
 * there is no such user). */
static int get_pw(const char *name, uid_t uid, struct passwd *pw, char **buf)
{
	struct passwd *res = NULL;
	size_t len = BUF_FIRST;
	int rc;

	for (;;) {
		*buf = xrealloc(*buf, len);
		rc = name ? getpwnam_r(name, pw, *buf, len, &res)
			  : getpwuid_r(uid, pw, *buf, len, &res);
		if (rc != ERANGE || len >= BUF_MAX)
			break;
		len *= 2;
	}
	errno = rc;
	return res ? 0 : -1;
}

static int get_gr(const char *name, gid_t gid, struct group *gr, char **buf)
{
	struct group *res = NULL;
	size_t len = BUF_FIRST;
	int rc;

	for (;;) {
		*buf = xrealloc(*buf, len);
		rc = name ? getgrnam_r(name, gr, *buf, len, &res)
			  : getgrgid_r(gid, gr, *buf, len, &res);
		if (rc != ERANGE || len >= BUF_MAX)
			break;
		len *= 2;
	}
	errno = rc;
	return res ? 0 : -1;
}

/* After a failed lookup: errno 0 (or ENOENT, ESRCH from some NSS
 * modules) means there is no such entry. */
static void not_found(const char *what, const char *db, char *why, size_t whylen)
{
	if (errno != 0 && errno != ENOENT && errno != ESRCH)
		snprintf(why, whylen, "cannot look it up in the %s database: %s", db,
			 strerror(errno));
	else
		snprintf(why, whylen, "no such %s (a name from the %s database, or a number)", what,
			 db);
}

int account_user(const char *spec, uid_t *uid, gid_t *primary, char *why, size_t whylen)
{
	struct passwd pw;
	char *buf = NULL;
	unsigned long id;
	int rc = 0;

	if (parse_id(spec, &id)) {
		*uid = (uid_t)id;
		*primary = get_pw(NULL, *uid, &pw, &buf) == 0 ? pw.pw_gid : ACCOUNT_NO_GID;
	} else if (is_number(spec)) {
		snprintf(why, whylen, "is out of range: a uid is 0 to %lu", ID_MAX);
		rc = -1;
	} else if (get_pw(spec, 0, &pw, &buf) == 0) {
		*uid = pw.pw_uid;
		*primary = pw.pw_gid;
	} else {
		not_found("user", "password", why, whylen);
		rc = -1;
	}
	free(buf);
	return rc;
}

int account_group(const char *spec, gid_t *gid, char *why, size_t whylen)
{
	struct group gr;
	char *buf = NULL;
	unsigned long id;
	int rc = 0;

	if (parse_id(spec, &id)) {
		*gid = (gid_t)id;
	} else if (is_number(spec)) {
		snprintf(why, whylen, "is out of range: a gid is 0 to %lu", ID_MAX);
		rc = -1;
	} else if (get_gr(spec, 0, &gr, &buf) == 0) {
		*gid = gr.gr_gid;
	} else {
		not_found("group", "group", why, whylen);
		rc = -1;
	}
	free(buf);
	return rc;
}

int account_user_name(uid_t uid, char *buf, size_t len)
{
	struct passwd pw;
	char *pwbuf = NULL;
	int rc = get_pw(NULL, uid, &pw, &pwbuf);

	if (rc == 0)
		snprintf(buf, len, "%s", pw.pw_name);
	else
		snprintf(buf, len, "#%lu", (unsigned long)uid);
	free(pwbuf);
	return rc;
}
