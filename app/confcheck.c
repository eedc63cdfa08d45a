/* confcheck: value checks of the listen and account variables that need the
 * system (resolver, peer, account), apart from config's table and loading.
 * Pure: it fills a problem list and never logs, prints or exits. */
#include "confcheck.h"
#include "account.h"
#include "peer.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>

#define SUN_PATH_MAX sizeof(((struct sockaddr_un *)0)->sun_path)

/* ---- the listen variables ---- */

static bool is_ip(const char *s)
{
	unsigned char buf[sizeof(struct in6_addr)];

	return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

/* Letters, digits, '-', '_' (container names) and dots between non-empty
 * labels: refuse what could never be a name before asking the resolver. */
static bool hostname_syntax_ok(const char *s)
{
	size_t len = strlen(s);

	if (len == 0 || len > 253 || s[0] == '.' || strstr(s, "..") != NULL)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!isalnum((unsigned char)s[i]) && strchr("-_.", s[i]) == NULL)
			return false;
	return true;
}

/* Resolution happens once, at start-up (and on SIGHUP), never per request. */
static int resolve(const char *host)
{
	struct addrinfo hints, *res = NULL;
	int rc;

	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV | AI_PASSIVE;
	rc = getaddrinfo(host, NULL, &hints, &res);
	if (res != NULL)
		freeaddrinfo(res);
	return rc;
}

int confcheck_api_host(const char *name, const char *val, struct problems *p)
{
	char q[PROBLEMS_QUOTE_BUF];
	int rc;

	if (is_ip(val))
		return 0;
	problems_quote(val, q, sizeof q);
	if (!hostname_syntax_ok(val)) {
		problems_add(p,
			     "%s=\"%s\": must be an IP address (IPv6 without brackets) or a "
			     "resolvable host name",
			     name, q);
		return -1;
	}
	rc = resolve(val);
	if (rc == 0)
		return 0;
	problems_add(p, "%s=\"%s\": must be an IP address or a resolvable host name (%s)", name, q,
		     gai_strerror(rc));
	return -1;
}

int confcheck_api_socket(const char *name, const char *val, struct problems *p)
{
	char q[PROBLEMS_QUOTE_BUF];

	if (val[0] == '/' && strlen(val) < SUN_PATH_MAX)
		return 0;
	problems_quote(val, q, sizeof q);
	problems_add(p, "%s=\"%s\": must be an absolute path shorter than %zu bytes", name, q,
		     SUN_PATH_MAX);
	return -1;
}

/* Each entry is checked by peer, which builds the list from them. */
int confcheck_web_server_addrs(const char *name, const char *val, struct problems *p)
{
	char one[64], q[PROBLEMS_QUOTE_BUF], bad[PROBLEMS_QUOTE_BUF], why[160];

	for (const char *s = val;; s++) {
		size_t len = strcspn(s, ",");

		if (len >= sizeof one) {
			snprintf(why, sizeof why, "is not an IP address or CIDR block");
		} else {
			memcpy(one, s, len);
			one[len] = '\0';
		}
		if (len >= sizeof one || peer_entry_check(one, why, sizeof why) < 0) {
			problems_quote(val, q, sizeof q);
			snprintf(one, sizeof one, "%.*s", (int)(len < 48 ? len : 48), s);
			problems_quote(one, bad, sizeof bad);
			problems_add(
			    p,
			    "%s=\"%s\": \"%s\" %s; must be comma-separated IPv4 or IPv6 "
			    "addresses or CIDR blocks (10.0.0.0/8, fd00::/8) without spaces",
			    name, q, bad, why);
			return -1;
		}
		s += len;
		if (*s == '\0')
			return 0;
	}
}

static bool is_loopback(const char *host)
{
	struct in_addr a4;
	struct in6_addr a6;

	if (strcasecmp(host, "localhost") == 0)
		return true;
	if (inet_pton(AF_INET, host, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	if (inet_pton(AF_INET6, host, &a6) == 1)
		return IN6_IS_ADDR_LOOPBACK(&a6) ||
		       (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
	return false;
}

/* FastCGI has no authentication: whoever reaches the port can send requests
 * with any CGI parameters. Listening beyond loopback needs a peer list. */
void confcheck_exposure(const char *api_host, struct problems *p)
{
	char q[PROBLEMS_QUOTE_BUF];

	if (is_loopback(api_host))
		return;
	problems_quote(api_host, q, sizeof q);
	problems_add(p,
		     "API_HOST=\"%s\": a non-loopback address requires "
		     "FCGI_WEB_SERVER_ADDRS (comma-separated IPs of the web servers allowed to "
		     "connect): FastCGI has no authentication",
		     q);
}

/* ---- accounts: who owns the socket, who serves ---- */

static int report_account(const char *name, const char *val, const char *why, struct problems *p)
{
	char q[PROBLEMS_QUOTE_BUF];

	problems_quote(val, q, sizeof q);
	problems_add(p, "%s=\"%s\": %s", name, q, why);
	return -1;
}

int confcheck_user(const char *name, const char *val, struct problems *p)
{
	char why[160];
	uid_t uid;
	gid_t gid;

	if (account_user(val, &uid, &gid, why, sizeof why) == 0)
		return 0;
	return report_account(name, val, why, p);
}

int confcheck_group(const char *name, const char *val, struct problems *p)
{
	char why[160];
	gid_t gid;

	if (account_group(val, &gid, why, sizeof why) == 0)
		return 0;
	return report_account(name, val, why, p);
}

/* RUN_GROUP, else the user's primary group, which a uid without a password
 * entry does not have. */
void confcheck_run_ids(const char *user, bool user_bad, const char *group, bool group_bad,
		       uid_t *uid, gid_t *gid, struct problems *p)
{
	char why[160], q[PROBLEMS_QUOTE_BUF];

	*uid = (uid_t)-1;
	*gid = (gid_t)-1;
	if (user == NULL) {
		if (group != NULL && !group_bad) {
			problems_quote(group, q, sizeof q);
			problems_add(p,
				     "RUN_GROUP=\"%s\": needs RUN_USER, the user to switch to when "
				     "started as root",
				     q);
		}
		return;
	}
	if (user_bad || account_user(user, uid, gid, why, sizeof why) < 0) {
		*uid = (uid_t)-1;
		return;
	}
	if (group != NULL && (group_bad || account_group(group, gid, why, sizeof why) < 0))
		return;
	if (*gid != ACCOUNT_NO_GID)
		return;
	problems_quote(user, q, sizeof q);
	problems_add(
	    p,
	    "RUN_USER=\"%s\": no user has this uid, so there is no primary group to switch "
	    "to: set RUN_GROUP as well",
	    q);
}

/* PHP-FPM's listen.owner/listen.group: the socket belongs to the user the
 * process serves as unless told otherwise. */
void confcheck_socket_ids(const char *owner, bool owner_bad, const char *group, bool group_bad,
			  uid_t *uid, gid_t *gid)
{
	char why[160];
	gid_t unused;

	if (owner != NULL && !owner_bad && account_user(owner, uid, &unused, why, sizeof why) < 0)
		*uid = (uid_t)-1;
	if (group != NULL && !group_bad && account_group(group, gid, why, sizeof why) < 0)
		*gid = (gid_t)-1;
}
