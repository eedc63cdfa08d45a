/* conninfo: parsing, checking and describing DATABASE_URL. Pure: it fills a
 * problem list, never logs, and never lets a password out unredacted. */
#include "conninfo.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "problems.h"
#include "redact.h"

#define REDACT_BUF     1024
#define SSLMODE_ADVICE "use sslmode=verify-full (require and verify-ca are also accepted)"
#define PORT_DIGITS    15 /* longer entries are refused unread */

PQconninfoOption *conninfo_parse(const char *conninfo)
{
	char *err = NULL;
	PQconninfoOption *opts = PQconninfoParse(conninfo, &err);

	if (opts != NULL)
		return opts;
	if (err == NULL)
		abort(); /* libpq's out-of-memory signal */
	explicit_bzero(err, strlen(err));
	PQfreemem(err);
	return NULL;
}

void conninfo_free(PQconninfoOption *opts)
{
	if (opts == NULL)
		return;
	for (PQconninfoOption *o = opts; o->keyword != NULL; o++)
		if (o->val != NULL)
			explicit_bzero(o->val, strlen(o->val));
	PQconninfoFree(opts);
}

void conninfo_quote(const char *conninfo, char *buf, size_t len)
{
	char redacted[REDACT_BUF];

	redact_conninfo(conninfo, redacted, sizeof redacted);
	problems_quote(redacted, buf, len);
	explicit_bzero(redacted, sizeof redacted);
}

/* ---- the facts the checks need ---- */

enum ssl_class { SSL_ABSENT, SSL_WEAK, SSL_REQUIRE, SSL_VERIFY, SSL_INVALID };

/* What the checks need from a parsed connection string; no secret. */
struct facts {
	bool host, dbname, user, tcp, port_ok;
	enum ssl_class ssl;
	char sslmode[32];
};

/* A comma-separated host list reaches some host over TCP, not a unix socket
 * ('/' path, or '@' abstract name as libpq reads it on Linux). Empty entries
 * fall back to libpq's default socket. */
static bool hosts_use_tcp(const char *hosts)
{
	for (const char *h = hosts;; h++) {
		size_t len = strcspn(h, ",");

		if (len > 0 && *h != '/' && *h != '@')
			return true;
		h += len;
		if (*h == '\0')
			return false;
	}
}

/* Digits only, 1..65535. */
static bool port_ok(const char *s, size_t len)
{
	long n = 0;

	if (len > PORT_DIGITS)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		n = n * 10 + (s[i] - '0');
	}
	return n >= 1 && n <= 65535;
}

/* A comma-separated port list: each entry empty (default) or a port. */
static bool ports_valid(const char *ports)
{
	for (const char *s = ports;; s++) {
		size_t len = strcspn(s, ",");

		if (len > 0 && !port_ok(s, len))
			return false;
		s += len;
		if (*s == '\0')
			return true;
	}
}

static enum ssl_class classify_sslmode(const char *mode)
{
	static const char *const weak[] = { "disable", "allow", "prefer", NULL };
	static const char *const verify[] = { "verify-ca", "verify-full", NULL };

	if (mode == NULL || *mode == '\0')
		return SSL_ABSENT;
	for (size_t i = 0; weak[i] != NULL; i++)
		if (strcmp(mode, weak[i]) == 0)
			return SSL_WEAK;
	for (size_t i = 0; verify[i] != NULL; i++)
		if (strcmp(mode, verify[i]) == 0)
			return SSL_VERIFY;
	return strcmp(mode, "require") == 0 ? SSL_REQUIRE : SSL_INVALID;
}

static bool nonempty(const char *val)
{
	return val != NULL && *val != '\0';
}

static void note_option(struct facts *f, const char *key, const char *val)
{
	if (strcmp(key, "host") == 0 && nonempty(val)) {
		f->host = true;
		f->tcp = f->tcp || hosts_use_tcp(val);
	} else if (strcmp(key, "hostaddr") == 0 && nonempty(val)) {
		f->host = f->tcp = true;
	} else if (strcmp(key, "dbname") == 0) {
		f->dbname = nonempty(val);
	} else if (strcmp(key, "user") == 0) {
		f->user = nonempty(val);
	} else if (strcmp(key, "port") == 0 && val != NULL) {
		f->port_ok = ports_valid(val);
	} else if (strcmp(key, "sslmode") == 0) {
		f->ssl = classify_sslmode(val);
		problems_quote(val ? val : "", f->sslmode, sizeof f->sslmode);
	}
}

static int read_facts(const char *conninfo, struct facts *f)
{
	PQconninfoOption *opts = conninfo_parse(conninfo);

	memset(f, 0, sizeof *f);
	f->port_ok = true;
	if (opts == NULL)
		return -1;
	for (PQconninfoOption *o = opts; o->keyword != NULL; o++)
		note_option(f, o->keyword, o->val);
	conninfo_free(opts);
	return 0;
}

/* ---- the checks ---- */

static int check_scheme(struct problems *p, const char *url, const char *shown)
{
	size_t n = redact_uri_prefix_len(url, strlen(url));
	char scheme[64];

	if (n == 0 || strncmp(url, "postgres://", n) == 0 || strncmp(url, "postgresql://", n) == 0)
		return 0;
	snprintf(scheme, sizeof scheme, "%.*s", (int)(n - 3 < 40 ? n - 3 : 40), url);
	problems_add(p,
		     "DATABASE_URL=\"%s\": scheme \"%s\" is not supported; use a " CONNINFO_FORMS,
		     shown, scheme);
	return -1;
}

/* Host, database and user must be named (libpq would fall back to the
 * environment and the OS user); the port, if given, must be a port. */
static int report_parts(struct problems *p, const struct facts *f, const char *shown)
{
	char missing[32];
	int rc = 0;

	snprintf(missing, sizeof missing, "%s%s%s", f->host ? "" : ", host",
		 f->dbname ? "" : ", dbname", f->user ? "" : ", user");
	if (missing[0] != '\0') {
		problems_add(p,
			     "DATABASE_URL=\"%s\": must name a host, a database and a "
			     "user; missing: %s",
			     shown, missing + 2);
		rc = -1;
	}
	if (!f->port_ok) {
		problems_add(p,
			     "DATABASE_URL=\"%s\": port must be an integer between 1 and "
			     "65535",
			     shown);
		rc = -1;
	}
	return rc;
}

static int report_sslmode(struct problems *p, const struct facts *f, const char *shown)
{
	if (f->ssl == SSL_INVALID) {
		problems_add(p, "DATABASE_URL=\"%s\": sslmode=\"%s\" is not a libpq sslmode; %s",
			     shown, f->sslmode, SSLMODE_ADVICE);
		return -1;
	}
	if (!f->host || !f->tcp)
		return 0; /* a unix socket is not on the network: TLS is not needed */
	if (f->ssl == SSL_ABSENT) {
		problems_add(p,
			     "DATABASE_URL=\"%s\": sslmode is not set, so TLS is not "
			     "guaranteed over TCP; add sslmode=verify-full (require and verify-ca "
			     "are also accepted)",
			     shown);
		return -1;
	}
	if (f->ssl == SSL_WEAK) {
		problems_add(p,
			     "DATABASE_URL=\"%s\": sslmode=%s does not guarantee TLS over "
			     "TCP; %s",
			     shown, f->sslmode, SSLMODE_ADVICE);
		return -1;
	}
	return 0;
}

int conninfo_check(const char *conninfo, struct problems *p, bool *sslmode_require)
{
	char shown[PROBLEMS_QUOTE_BUF];
	struct facts f;
	int rc;

	*sslmode_require = false;
	conninfo_quote(conninfo, shown, sizeof shown);
	if (check_scheme(p, conninfo, shown) < 0)
		return -1;
	if (read_facts(conninfo, &f) < 0) {
		problems_add(p,
			     "DATABASE_URL=\"%s\": cannot be parsed as a URI or key=value "
			     "string (" CONNINFO_FORMS ")",
			     shown);
		return -1;
	}
	rc = report_parts(p, &f, shown);
	if (report_sslmode(p, &f, shown) < 0)
		rc = -1;
	*sslmode_require = f.tcp && f.ssl == SSL_REQUIRE;
	return rc;
}

/* ---- the banner's target ---- */

void conninfo_target(const char *conninfo, char *out, size_t outlen)
{
	const char *host = NULL, *hostaddr = NULL, *port = NULL, *db = NULL;
	PQconninfoOption *opts;

	if (outlen == 0)
		return;
	snprintf(out, outlen, "(invalid)");
	if (conninfo == NULL || (opts = conninfo_parse(conninfo)) == NULL)
		return;
	for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
		const char **slot = strcmp(o->keyword, "host") == 0       ? &host
				    : strcmp(o->keyword, "hostaddr") == 0 ? &hostaddr
				    : strcmp(o->keyword, "port") == 0     ? &port
				    : strcmp(o->keyword, "dbname") == 0   ? &db
									  : NULL;
		if (slot != NULL && nonempty(o->val))
			*slot = o->val;
	}
	host = host ? host : hostaddr ? hostaddr : "localhost";
	snprintf(out, outlen, strchr(host, ':') && !strchr(host, ',') ? "[%s]:%s/%s" : "%s:%s/%s",
		 host, port ? port : "5432", db ? db : "");
	conninfo_free(opts);
}
