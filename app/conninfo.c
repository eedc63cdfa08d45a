/* conninfo: parsing, checking and describing DATABASE_URL. Pure: it fills a
 * problem list, never logs, and never lets a password out unredacted. */
#include "conninfo.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cabundle.h"
#include "pqopts.h"
#include "problems.h"
#include "redact.h"
#include "xalloc.h"

#define REDACT_BUF     1024
#define SSLMODE_ADVICE "use sslmode=verify-full (require and verify-ca are also accepted)"
#define PORT_DIGITS    15 /* longer entries are refused unread */
#define NAME_BUF       64 /* an option name libpq refused */

/* PQconninfoParse. On failure, name gets the option libpq refused as
 * unknown ("" if that was not the reason); the rest of its error text may
 * quote the password and is wiped unread. */
static PQconninfoOption *parse_noting_option(const char *conninfo, char *name, size_t len)
{
	char *err = NULL;
	PQconninfoOption *opts = PQconninfoParse(conninfo, &err);

	name[0] = '\0';
	if (opts != NULL)
		return opts;
	if (err == NULL)
		abort(); /* libpq's out-of-memory signal */
	if (!pqopts_refused_name(err, name, len))
		name[0] = '\0';
	explicit_bzero(err, strlen(err));
	PQfreemem(err);
	return NULL;
}

PQconninfoOption *conninfo_parse(const char *conninfo)
{
	char unused[NAME_BUF];

	return parse_noting_option(conninfo, unused, sizeof unused);
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

/* ---- what the linked libpq knows ---- */

bool conninfo_libpq_knows(const char *keyword)
{
	/* PQconndefaults reads the environment (PGPASSWORD too) and a service
	 * file; when that fails, the bare option list serves. */
	PQconninfoOption *opts = PQconndefaults();
	bool known = false;

	if (opts == NULL)
		opts = conninfo_parse("");
	for (PQconninfoOption *o = opts; o != NULL && o->keyword != NULL; o++)
		known = known || strcmp(o->keyword, keyword) == 0;
	conninfo_free(opts);
	return known;
}

/* ---- the CA that verifies the server ---- */

static bool nonempty(const char *val)
{
	return val != NULL && *val != '\0';
}

static const char *value_of(const PQconninfoOption *opts, const char *keyword)
{
	for (const PQconninfoOption *o = opts; o->keyword != NULL; o++)
		if (strcmp(o->keyword, keyword) == 0 && nonempty(o->val))
			return o->val;
	return NULL;
}

static bool is_verify(const char *mode)
{
	return mode != NULL && (strcmp(mode, "verify-full") == 0 || strcmp(mode, "verify-ca") == 0);
}

void conninfo_ca_of(const PQconninfoOption *opts, struct conninfo_ca *ca)
{
	const char *root = value_of(opts, "sslrootcert"), *mode = value_of(opts, "sslmode");
	const char *root_source = "sslrootcert", *found;
	enum cabundle_source src;

	memset(ca, 0, sizeof *ca);
	if (root == NULL && nonempty(getenv("PGSSLROOTCERT"))) {
		root = getenv("PGSSLROOTCERT");
		root_source = "PGSSLROOTCERT";
	}
	ca->named_system = root != NULL && strcmp(root, "system") == 0;
	ca->system = root == NULL || ca->named_system;
	/* As libpq 16 does: sslrootcert=system makes verify-full the default. */
	ca->implied_verify_full = ca->named_system && mode == NULL;
	if (mode == NULL)
		mode = ca->implied_verify_full ? "verify-full" : getenv("PGSSLMODE");
	ca->verify = is_verify(mode);
	if (!ca->verify)
		return;
	if (!ca->system) {
		snprintf(ca->file, sizeof ca->file, "%s", root);
		ca->source = root_source;
	} else if ((found = cabundle_find(&src)) != NULL) {
		snprintf(ca->file, sizeof ca->file, "%s", found);
		ca->source = cabundle_source_name(src);
	}
}

int conninfo_ca(const char *conninfo, struct conninfo_ca *ca)
{
	PQconninfoOption *opts = conninfo != NULL ? conninfo_parse(conninfo) : NULL;

	memset(ca, 0, sizeof *ca);
	if (opts == NULL)
		return -1;
	conninfo_ca_of(opts, ca);
	conninfo_free(opts);
	return 0;
}

/* ---- the facts the checks need ---- */

enum ssl_class { SSL_ABSENT, SSL_WEAK, SSL_REQUIRE, SSL_VERIFY, SSL_INVALID };

/* What the checks need from a parsed connection string; no secret. */
struct facts {
	bool host, dbname, user, tcp, port_ok, channel_binding_require;
	enum ssl_class ssl;
	char sslmode[32];
	struct conninfo_ca ca;
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

	if (mode == NULL || *mode == '\0')
		return SSL_ABSENT;
	for (size_t i = 0; weak[i] != NULL; i++)
		if (strcmp(mode, weak[i]) == 0)
			return SSL_WEAK;
	if (is_verify(mode))
		return SSL_VERIFY;
	return strcmp(mode, "require") == 0 ? SSL_REQUIRE : SSL_INVALID;
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
	} else if (strcmp(key, "channel_binding") == 0) {
		f->channel_binding_require = val != NULL && strcmp(val, "require") == 0;
	}
}

static void read_facts(const PQconninfoOption *opts, struct facts *f)
{
	memset(f, 0, sizeof *f);
	f->port_ok = true;
	for (const PQconninfoOption *o = opts; o->keyword != NULL; o++)
		note_option(f, o->keyword, o->val);
	conninfo_ca_of(opts, &f->ca);
	if (f->ca.implied_verify_full) {
		f->ssl = SSL_VERIFY;
		snprintf(f->sslmode, sizeof f->sslmode, "verify-full");
	}
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

/* name stands as an option name in conninfo as the redaction helper shows
 * it ("name=" at the start, after a blank, '?' or '&'): naming it then
 * shows nothing a redacted line does not. */
static bool shown_as_option(const char *conninfo, const char *name)
{
	size_t len = strlen(conninfo) * 3 + 16, n = strlen(name);
	char *redacted = xmalloc(len);
	bool found = false;

	redact_conninfo(conninfo, redacted, len);
	for (const char *k = strstr(redacted, name); k != NULL && !found; k = strstr(k + 1, name)) {
		const char *after = k + n;

		while (isspace((unsigned char)*after))
			after++;
		found = *after == '=' && (k == redacted || isspace((unsigned char)k[-1]) ||
					  k[-1] == '?' || k[-1] == '&');
	}
	xfree_wiped(redacted);
	return found;
}

/* libpq refused an option as unknown: say which libpq it needs, if any.
 * 0, or -1 when the refusal was for something else. */
static int report_unknown_option(struct problems *p, const char *conninfo, const char *shown,
				 const char *name)
{
	int v = PQlibVersion(), since;

	if (name[0] == '\0' || conninfo_libpq_knows(name))
		return -1;
	since = pqopts_since(name);
	if (since == 0 && !shown_as_option(conninfo, name))
		return -1;
	if (since > v / 10000)
		problems_add(p,
			     "DATABASE_URL=\"%s\": option \"%s\" needs libpq %d or newer; this "
			     "build links libpq %d.%d (PQlibVersion); remove the option or use a "
			     "build linked against libpq %d or newer",
			     shown, name, since, v / 10000, v % 10000, since);
	else if (since > 0)
		problems_add(p,
			     "DATABASE_URL=\"%s\": option \"%s\" is not available in the linked "
			     "libpq %d.%d (built without it); remove the option",
			     shown, name, v / 10000, v % 10000);
	else
		problems_add(p,
			     "DATABASE_URL=\"%s\": option \"%s\" is not a libpq connection option "
			     "(libpq %d.%d); remove it or correct its name",
			     shown, name, v / 10000, v % 10000);
	return 0;
}

static void report_unparsable(struct problems *p, const char *conninfo, const char *shown,
			      const char *refused)
{
	if (report_unknown_option(p, conninfo, shown, refused) == 0)
		return;
	problems_add(p,
		     "DATABASE_URL=\"%s\": cannot be parsed as a URI or key=value "
		     "string (" CONNINFO_FORMS ")",
		     shown);
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

/* Enumerated options take one of their values: libpq itself would only
 * refuse them when connecting (sslmode has its own rule above). */
static int report_values(struct problems *p, const PQconninfoOption *opts, const char *shown)
{
	char option[256], q[PROBLEMS_QUOTE_BUF];
	const char *valid;
	int rc = 0;

	for (const PQconninfoOption *o = opts; o->keyword != NULL; o++) {
		if (o->val == NULL || pqopts_value_ok(o->keyword, o->val, &valid))
			continue;
		snprintf(option, sizeof option, "%s=%s", o->keyword, o->val);
		conninfo_quote(option, q, sizeof q); /* never a secret; redacted all the same */
		explicit_bzero(option, sizeof option);
		problems_add(p, "DATABASE_URL=\"%s\": \"%s\" is not valid: %s must be %s", shown, q,
			     o->keyword, valid);
		rc = -1;
	}
	return rc;
}

/* SSL_CERT_FILE, when set, must be readable: it names the trust store. */
static int report_ssl_cert_file(struct problems *p, const struct facts *f, const char *shown)
{
	const char *path = getenv("SSL_CERT_FILE");
	char q[PROBLEMS_QUOTE_BUF];

	if (!nonempty(path) || cabundle_readable(path))
		return 0;
	problems_quote(path, q, sizeof q);
	problems_add(p,
		     "SSL_CERT_FILE=\"%s\": not a readable file, yet DATABASE_URL=\"%s\" "
		     "(sslmode=%s) verifies the server against the CA bundle it names; correct "
		     "the path or unset SSL_CERT_FILE",
		     q, shown, f->sslmode);
	return -1;
}

/* verify-ca/verify-full without a CA file of their own use the system
 * bundle, which must exist; sslrootcert=system needs verify-full, as in
 * libpq 16 (with verify-ca, any certificate a public CA signed passes). */
static int report_ca(struct problems *p, const struct facts *f, const char *shown)
{
	if (!f->host || !f->tcp || f->ssl == SSL_INVALID)
		return 0;
	if (f->ca.named_system && strcmp(f->sslmode, "verify-full") != 0) {
		problems_add(p,
			     "DATABASE_URL=\"%s\": sslrootcert=system requires sslmode=verify-full "
			     "(as libpq 16 and later do), not sslmode=%s; use sslmode=verify-full",
			     shown, f->sslmode[0] ? f->sslmode : "(unset)");
		return -1;
	}
	if (!f->ca.verify || !f->ca.system)
		return 0;
	if (report_ssl_cert_file(p, f, shown) < 0)
		return -1;
	if (f->ca.file[0] != '\0')
		return 0;
	problems_add(p,
		     "DATABASE_URL=\"%s\": sslmode=%s verifies the server against the system CA "
		     "bundle, and none was found (SSL_CERT_FILE unset, no OpenSSL default file, "
		     "none of the usual distribution paths); install the ca-certificates "
		     "package, or set SSL_CERT_FILE or sslrootcert=/path/to/ca.pem",
		     shown, f->sslmode);
	return -1;
}

int conninfo_check(const char *conninfo, struct problems *p, bool *sslmode_require)
{
	char shown[PROBLEMS_QUOTE_BUF], refused[NAME_BUF];
	PQconninfoOption *opts;
	struct facts f;
	int rc;

	*sslmode_require = false;
	conninfo_quote(conninfo, shown, sizeof shown);
	if (check_scheme(p, conninfo, shown) < 0)
		return -1;
	opts = parse_noting_option(conninfo, refused, sizeof refused);
	if (opts == NULL) {
		report_unparsable(p, conninfo, shown, refused);
		return -1;
	}
	read_facts(opts, &f);
	rc = report_parts(p, &f, shown);
	if (report_sslmode(p, &f, shown) < 0)
		rc = -1;
	if (report_values(p, opts, shown) < 0)
		rc = -1;
	if (report_ca(p, &f, shown) < 0)
		rc = -1;
	conninfo_free(opts);
	*sslmode_require = f.tcp && f.ssl == SSL_REQUIRE;
	return rc;
}

/* ---- the start-up warning ---- */

bool conninfo_tls_warning(const char *conninfo, char *buf, size_t len)
{
	PQconninfoOption *opts = conninfo != NULL ? conninfo_parse(conninfo) : NULL;
	struct facts f;

	if (len > 0)
		buf[0] = '\0';
	if (opts == NULL)
		return false;
	read_facts(opts, &f);
	conninfo_free(opts);
	if (!f.tcp || f.ssl != SSL_REQUIRE || len == 0)
		return false;
	if (f.channel_binding_require)
		snprintf(buf, len,
			 "sslmode=require encrypts but does not verify the server's certificate; "
			 "channel_binding=require binds the SCRAM exchange to the TLS channel, so "
			 "a relay without the password's verifier cannot complete it, yet the "
			 "server is still not authenticated: use sslmode=verify-full");
	else
		snprintf(
		    buf, len,
		    "sslmode=require encrypts but does not verify the server's certificate, "
		    "so a machine in the path can pose as the server: use sslmode=verify-full");
	return true;
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
