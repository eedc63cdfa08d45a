/* Unit tests of app/conninfo.c: the DATABASE_URL rules (one table), options
 * checked against the linked libpq, the CA file that verifies the server
 * (with a fake cabundle: which bundle exists is the test's), the
 * sslmode=require warning, the banner's target, quoting for problem lines,
 * and that everything libpq hands back (options, error text) is wiped
 * before it is freed. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cabundle.h"
#include "conninfo.h"
#include "problems.h"

#define SECRET     "s3cr3t-P@ss:w0rd"
#define SECRET_ENC "s3cr3t-P%40ss%3Aw0rd"
#define DB_URL     "postgres://app:" SECRET_ENC "@db.example.com/app?sslmode=verify-full"

/* libpq hands its parse-error text to PQfreemem; this stand-in notes
 * whether the text still held the password when it was freed. */
static int pqfreemem_calls, pqfreemem_unwiped;

void PQfreemem(void *ptr)
{
	if (ptr != NULL) {
		pqfreemem_calls++;
		if (strstr(ptr, "hunter2") != NULL)
			pqfreemem_unwiped++;
	}
	free(ptr);
}

/* The fake cabundle: the system bundle found (NULL: none) and the files
 * that are readable. */
#define FAKE_BUNDLE "/fake/etc/ssl/bundle.pem"
static const char *fake_bundle = FAKE_BUNDLE;
static const char *fake_unreadable = "/fake/missing.pem";

const char *cabundle_find(enum cabundle_source *source)
{
	*source = fake_bundle ? CABUNDLE_DISTRIBUTION : CABUNDLE_NONE;
	return fake_bundle;
}

bool cabundle_readable(const char *path)
{
	return strcmp(path, fake_unreadable) != 0;
}

const char *cabundle_source_name(enum cabundle_source s)
{
	return s == CABUNDLE_DISTRIBUTION ? "distribution path" : "none";
}

static int reset_env(void **state)
{
	(void)state;
	fake_bundle = FAKE_BUNDLE;
	unsetenv("SSL_CERT_FILE");
	unsetenv("PGSSLROOTCERT");
	unsetenv("PGSSLMODE");
	return 0;
}

static bool has(const struct problems *p, const char *text, bool whole_line)
{
	for (size_t i = 0; i < p->n; i++)
		if (whole_line ? strcmp(p->lines[i], text) == 0 : strstr(p->lines[i], text) != NULL)
			return true;
	for (size_t i = 0; i < p->n; i++)
		print_message("  problem: %s\n", p->lines[i]);
	return false;
}

/* Lines every problem must satisfy: DATABASE_URL named, no secret shown. */
static void assert_no_secret(const struct problems *p)
{
	for (size_t j = 0; j < p->n; j++) {
		assert_non_null(strstr(p->lines[j], "DATABASE_URL"));
		assert_null(strstr(p->lines[j], "s3cr3t"));
		assert_null(strstr(p->lines[j], "w0rd"));
	}
}

struct url_case {
	const char *url;
	const char *problem; /* exact line or substring; NULL: valid */
	bool require;        /* *sslmode_require expected */
};

static const struct url_case url_cases[] = {
	{ DB_URL, NULL, false },
	{ "postgresql://app:" SECRET_ENC "@db.example.com:5432/app?sslmode=verify-ca", NULL,
	  false },
	{ "postgres://app:" SECRET_ENC "@db.example.com/app?sslmode=require", NULL, true },
	{ "postgres://app:" SECRET_ENC "@ep-x-pooler.neon.tech/app?sslmode=verify-full"
	  "&channel_binding=require",
	  NULL, false },
	{ "host=db.example.com dbname=app user=app password='" SECRET "' sslmode=verify-full", NULL,
	  false },
	{ "hostaddr=10.0.0.5 dbname=app user=app sslmode=require", NULL, true },
	{ "postgres://app:" SECRET_ENC "@[2001:db8::1]:5432/app?sslmode=verify-full", NULL, false },
	{ "postgres://app@h1,h2:5433/app?sslmode=verify-full&target_session_attrs=read-write", NULL,
	  false },
	/* a unix-socket host is exempt from sslmode */
	{ "host=/var/run/postgresql dbname=app user=app", NULL, false },
	{ "postgresql://app@%2Fvar%2Frun%2Fpostgresql/app", NULL, false },
	{ "postgres:///app?host=/tmp&user=app&sslmode=disable", NULL, false },
	{ "host=/tmp dbname=app user=app sslmode=require", NULL, false },
	/* the examples */
	{ "mysql://u:p@h/d",
	  "DATABASE_URL=\"mysql://u:****@h/d\": scheme \"mysql\" is not supported; use a "
	  "postgres:// "
	  "or postgresql:// URI, or libpq key=value string",
	  false },
	{ "postgres://app:" SECRET_ENC "@db.example.com/app?sslmode=disable",
	  "DATABASE_URL=\"postgres://app:****@db.example.com/app?sslmode=disable\": "
	  "sslmode=disable "
	  "does not guarantee TLS over TCP; use sslmode=verify-full (require and verify-ca are "
	  "also "
	  "accepted)",
	  false },
	{ "postgres://app:" SECRET_ENC "@db.example.com/app",
	  "DATABASE_URL=\"postgres://app:****@db.example.com/app\": sslmode is not set, so TLS is "
	  "not "
	  "guaranteed over TCP; add sslmode=verify-full (require and verify-ca are also accepted)",
	  false },
	{ "host=db dbname=app user=app password=" SECRET " sslmode=prefer",
	  "sslmode=prefer does not", false },
	{ "host=db dbname=app user=app sslmode=allow", "sslmode=allow does not", false },
	{ "host=db dbname=app user=app sslmode=VERIFY-FULL",
	  "sslmode=\"VERIFY-FULL\" is not a libpq", false },
	{ "host=db,/tmp dbname=app user=app", "sslmode is not set", false },
	/* what must be named */
	{ "postgres://db.example.com?sslmode=verify-full",
	  "DATABASE_URL=\"postgres://db.example.com?sslmode=verify-full\": must name a host, a "
	  "database and a user; missing: dbname, user",
	  false },
	{ "dbname=app sslmode=require", "missing: host, user", false },
	{ "postgres://:" SECRET_ENC "@/?sslmode=require", "missing: host, dbname, user", false },
	{ "user=app sslmode=require",
	  "DATABASE_URL=\"user=app sslmode=require\": must name a host, a database and a user; "
	  "missing: host, dbname",
	  false },
	{ "postgres://app:" SECRET_ENC "@db:99999/app?sslmode=require",
	  "port must be an integer between 1 and 65535", false },
	/* unparsable: a generic message, never libpq's (it may quote the password) */
	{ "host=db password=" SECRET " dbname",
	  "DATABASE_URL=\"host=db password=**** ****\": cannot be parsed as a URI or key=value "
	  "string "
	  "(postgres:// or postgresql:// URI, or libpq key=value string)",
	  false },
	/* an option libpq does not know is named, never its value */
	{ "postgres://app:" SECRET_ENC "@db/app?passwd=" SECRET_ENC,
	  "?passwd=****\": option \"passwd\" is not a libpq connection option (libpq ", false },
	{ "POSTGRES://app:" SECRET "@db/app", "scheme \"POSTGRES\" is not supported", false },
	{ "localhost:5432", "cannot be parsed", false },
	/* enumerated options: libpq itself would refuse these only when connecting */
	{ "host=db dbname=app user=app password=" SECRET " sslmode=require channel_binding=bogus",
	  "DATABASE_URL=\"host=db dbname=app user=app password=**** sslmode=require "
	  "channel_binding=bogus\": \"channel_binding=bogus\" is not valid: channel_binding must "
	  "be disable, prefer or require",
	  false },
	{ "postgres://app@db/app?sslmode=require&channel_binding=Require",
	  "\"channel_binding=Require\" is not valid", false },
	{ "postgres://app@db/app?sslmode=require&channel_binding=disable", NULL, true },
	{ "postgres://app@db/app?sslmode=require&channel_binding=prefer", NULL, true },
	{ "postgres://app@db/app?sslmode=require&gssencmode=disable", NULL, true },
	{ "postgres://app@db/app?sslmode=require&gssencmode=prefer", NULL, true },
	{ "postgres://app@db/app?sslmode=require&gssencmode=require", NULL, true },
	{ "postgres://app@db/app?sslmode=require&gssencmode=allow",
	  "\"gssencmode=allow\" is not valid: gssencmode must be disable, prefer or require",
	  false },
	{ "postgres://app@db/app?sslmode=require&target_session_attrs=any", NULL, true },
	{ "postgres://app@db/app?sslmode=require&target_session_attrs=read-only", NULL, true },
	{ "postgres://app@db/app?sslmode=require&target_session_attrs=primary", NULL, true },
	{ "postgres://app@db/app?sslmode=require&target_session_attrs=standby", NULL, true },
	{ "postgres://app@db/app?sslmode=require&target_session_attrs=prefer-standby", NULL, true },
	{ "postgres://app@db/app?sslmode=require&target_session_attrs=master",
	  "\"target_session_attrs=master\" is not valid: target_session_attrs must be any, "
	  "read-write, read-only, primary, standby or prefer-standby",
	  false },
	{ "postgres://app@db/app?sslmode=require&ssl_min_protocol_version=TLSv1.2"
	  "&ssl_max_protocol_version=tlsv1.3",
	  NULL, true },
	{ "postgres://app@db/app?sslmode=require&ssl_min_protocol_version=TLSv1.4",
	  "\"ssl_min_protocol_version=TLSv1.4\" is not valid: ssl_min_protocol_version must be "
	  "TLSv1, TLSv1.1, TLSv1.2 or TLSv1.3",
	  false },
	{ "postgres://app@db/app?sslmode=require&ssl_max_protocol_version=SSLv3",
	  "\"ssl_max_protocol_version=SSLv3\" is not valid", false },
	/* sslrootcert=system: verify-full, as libpq 16 has it */
	{ "postgres://app:" SECRET_ENC "@db/app?sslrootcert=system", NULL, false },
	{ "postgres://app@db/app?sslrootcert=system&sslmode=verify-full", NULL, false },
	{ "postgres://app:" SECRET_ENC "@db/app?sslrootcert=system&sslmode=require",
	  "DATABASE_URL=\"postgres://app:****@db/app?sslrootcert=system&sslmode=require\": "
	  "sslrootcert=system requires sslmode=verify-full (as libpq 16 and later do), not "
	  "sslmode=require; use sslmode=verify-full",
	  false },
	{ "postgres://app@db/app?sslrootcert=system&sslmode=verify-ca",
	  "sslrootcert=system requires sslmode=verify-full", false },
	{ "host=db dbname=app user=app sslrootcert=system sslmode=prefer",
	  "sslmode=prefer does not guarantee TLS", false },
	/* a CA file of its own needs no system bundle */
	{ "postgres://app@db/app?sslmode=verify-full&sslrootcert=/etc/app/ca.pem", NULL, false },
};

/* Each case once: an exact line when it starts with DATABASE_URL=, else a
 * substring; every line names DATABASE_URL and none shows the password. */
static void test_check_rules(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof url_cases / sizeof url_cases[0]; i++) {
		const struct url_case *c = &url_cases[i];
		struct problems p = { NULL, 0 };
		bool require = !c->require; /* must be set either way */
		int rc = conninfo_check(c->url, &p, &require);

		print_message("case %zu: %s\n", i, c->url);
		if (c->problem == NULL) {
			if (rc != 0 || p.n != 0)
				fail_msg("expected valid, rc=%d first=%s", rc,
					 p.n ? p.lines[0] : "");
			assert_int_equal(require, c->require);
		} else {
			assert_int_equal(rc, -1);
			assert_true(
			    has(&p, c->problem, strncmp(c->problem, "DATABASE_URL=", 13) == 0));
		}
		assert_no_secret(&p);
		problems_free(&p);
	}
}

/* An option the linked libpq refuses is named with the libpq release that
 * introduced it, or as no libpq option; never with its value. */
static void test_unknown_options(void **state)
{
	static const struct {
		const char *url;
		const char *name; /* the option named; NULL: only "cannot be parsed" */
		int since;        /* 0: no libpq release has it */
	} cases[] = {
		{ "postgres://app:" SECRET_ENC "@db/app?sslmode=require&sslnegotiation=direct",
		  "sslnegotiation", 17 },
		{ "host=db dbname=app user=app password=" SECRET
		  " sslmode=require sslnegotiation=direct",
		  "sslnegotiation", 17 },
		{ "postgres://app@db/app?sslmode=verify-full&require_auth=scram-sha-256",
		  "require_auth", 16 },
		{ "postgres://app@db/app?sslmode=verify-full&load_balance_hosts=random",
		  "load_balance_hosts", 16 },
		{ "postgres://app@db/app?sslmode=verify-full&sslkeylogfile=/tmp/keys",
		  "sslkeylogfile", 18 },
		{ "postgres://app@db/app?sslmode=verify-full&oauth_client_secret=" SECRET_ENC,
		  "oauth_client_secret", 18 },
		{ "host=db dbname=app user=app sslmode=verify-full scram_client_key=" SECRET,
		  "scram_client_key", 18 },
		{ "postgres://app:" SECRET_ENC "@db/app?sslmode=require&bogus_option=1",
		  "bogus_option", 0 },
		{ "host=db dbname=app user=app sslmode=require sslnegociation=direct",
		  "sslnegociation", 0 },
		/* not a keyword's syntax: libpq's text is not trusted to hold a name */
		{ "postgres://app@db/app?sslmode=require&Bad-Name=1", NULL, 0 },
		{ "host=db password=" SECRET " dbname", NULL, 0 },
	};
	int v = PQlibVersion();
	char want[256];

	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct problems p = { NULL, 0 };
		bool require;
		int rc = conninfo_check(cases[i].url, &p, &require);

		print_message("case %zu: %s\n", i, cases[i].url);
		if (cases[i].since > 0 && cases[i].since <= v / 10000) {
			assert_int_equal(rc, 0); /* this libpq knows it */
			continue;
		}
		if (cases[i].name == NULL)
			snprintf(want, sizeof want, "cannot be parsed");
		else if (cases[i].since > 0)
			snprintf(want, sizeof want,
				 "\": option \"%s\" needs libpq %d or newer; this build links "
				 "libpq %d.%d (PQlibVersion); remove the option or use a build "
				 "linked against libpq %d or newer",
				 cases[i].name, cases[i].since, v / 10000, v % 10000,
				 cases[i].since);
		else
			snprintf(want, sizeof want,
				 "\": option \"%s\" is not a libpq connection option (libpq "
				 "%d.%d); remove it or correct its name",
				 cases[i].name, v / 10000, v % 10000);
		assert_int_equal(rc, -1);
		assert_int_equal(p.n, 1);
		assert_true(has(&p, want, false));
		assert_no_secret(&p);
		problems_free(&p);
	}
}

/* Which CA file verifies the server, and where it came from. */
static void test_ca_file(void **state)
{
	struct conninfo_ca ca;

	(void)state;
	assert_int_equal(conninfo_ca(DB_URL, &ca), 0);
	assert_true(ca.verify && ca.system && !ca.named_system && !ca.implied_verify_full);
	assert_string_equal(ca.file, FAKE_BUNDLE);
	assert_string_equal(ca.source, "distribution path");

	assert_int_equal(conninfo_ca("host=db sslmode=verify-ca sslrootcert=/etc/app/ca.pem", &ca),
			 0);
	assert_true(ca.verify && !ca.system);
	assert_string_equal(ca.file, "/etc/app/ca.pem");
	assert_string_equal(ca.source, "sslrootcert");

	setenv("PGSSLROOTCERT", "/env/ca.pem", 1);
	assert_int_equal(conninfo_ca("host=db sslmode=verify-full", &ca), 0);
	assert_string_equal(ca.file, "/env/ca.pem");
	assert_string_equal(ca.source, "PGSSLROOTCERT");
	setenv("PGSSLROOTCERT", "system", 1); /* libpq 15 would open a file "system" */
	assert_int_equal(conninfo_ca("host=db sslmode=verify-full", &ca), 0);
	assert_true(ca.named_system && ca.system);
	assert_string_equal(ca.file, FAKE_BUNDLE);
	unsetenv("PGSSLROOTCERT");

	/* sslrootcert=system without sslmode: verify-full */
	assert_int_equal(conninfo_ca("postgres://app@db/app?sslrootcert=system", &ca), 0);
	assert_true(ca.verify && ca.system && ca.named_system && ca.implied_verify_full);
	assert_string_equal(ca.file, FAKE_BUNDLE);

	/* require verifies nothing */
	assert_int_equal(conninfo_ca("host=db sslmode=require", &ca), 0);
	assert_false(ca.verify);
	assert_string_equal(ca.file, "");
	assert_null(ca.source);
	setenv("PGSSLMODE", "verify-ca", 1); /* libpq's own default, when the URL has none */
	assert_int_equal(conninfo_ca("host=db", &ca), 0);
	assert_true(ca.verify);
	assert_string_equal(ca.file, FAKE_BUNDLE);

	fake_bundle = NULL;
	assert_int_equal(conninfo_ca(DB_URL, &ca), 0);
	assert_true(ca.verify && ca.system);
	assert_string_equal(ca.file, "");
	assert_null(ca.source);
	assert_int_equal(conninfo_ca("not a conninfo " SECRET, &ca), -1);
	assert_int_equal(conninfo_ca(NULL, &ca), -1);
}

/* No system bundle: verification without a CA file of its own cannot work. */
static void test_missing_bundle(void **state)
{
	static const struct {
		const char *url;
		bool ok;
	} cases[] = {
		{ DB_URL, false },
		{ "postgres://app:" SECRET_ENC "@db/app?sslrootcert=system", false },
		{ "host=db dbname=app user=app sslmode=verify-ca", false },
		{ "postgres://app@db/app?sslmode=verify-full&sslrootcert=/etc/app/ca.pem", true },
		{ "postgres://app@db/app?sslmode=require", true },
		{ "host=/var/run/postgresql dbname=app user=app sslmode=verify-full", true },
	};

	(void)state;
	fake_bundle = NULL;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct problems p = { NULL, 0 };
		bool require;

		print_message("case %zu: %s\n", i, cases[i].url);
		assert_int_equal(conninfo_check(cases[i].url, &p, &require), cases[i].ok ? 0 : -1);
		if (!cases[i].ok) {
			assert_int_equal(p.n, 1);
			assert_true(
			    has(&p,
				"verifies the server against the system CA bundle, and none "
				"was found (SSL_CERT_FILE unset, no OpenSSL default file, none "
				"of the usual distribution paths); install the "
				"ca-certificates package, or set SSL_CERT_FILE or "
				"sslrootcert=/path/to/ca.pem",
				false));
		}
		assert_no_secret(&p);
		problems_free(&p);
	}
}

/* SSL_CERT_FILE names the trust store: when it cannot be read, say so
 * rather than verify against another one. */
static void test_ssl_cert_file_unreadable(void **state)
{
	struct problems p = { NULL, 0 };
	bool require;

	(void)state;
	setenv("SSL_CERT_FILE", fake_unreadable, 1);
	assert_int_equal(conninfo_check(DB_URL, &p, &require), -1);
	assert_int_equal(p.n, 1);
	assert_true(
	    has(&p,
		"SSL_CERT_FILE=\"/fake/missing.pem\": not a readable file, yet "
		"DATABASE_URL=\"postgres://app:****@db.example.com/app?sslmode=verify-full\" "
		"(sslmode=verify-full) verifies the server against the CA bundle it names; "
		"correct the path or unset SSL_CERT_FILE",
		true));
	problems_free(&p);
	/* not needed: a CA file of its own, or no verification */
	assert_int_equal(conninfo_check(DB_URL "&sslrootcert=/etc/app/ca.pem", &p, &require), 0);
	assert_int_equal(
	    conninfo_check("host=db dbname=app user=app sslmode=require", &p, &require), 0);
	setenv("SSL_CERT_FILE", "/fake/readable.pem", 1);
	assert_int_equal(conninfo_check(DB_URL, &p, &require), 0);
	assert_int_equal(p.n, 0);
}

/* The sslmode=require warning, in one place (DESIGN.md §5). */
static void test_tls_warning(void **state)
{
	char buf[512];

	(void)state;
	assert_true(conninfo_tls_warning("postgres://app:" SECRET_ENC "@db/app?sslmode=require",
					 buf, sizeof buf));
	assert_string_equal(buf,
			    "sslmode=require encrypts but does not verify the server's "
			    "certificate, so a machine in the path can pose as the server: use "
			    "sslmode=verify-full");
	assert_true(conninfo_tls_warning("postgres://app@db/app?sslmode=require&channel_binding="
					 "require",
					 buf, sizeof buf));
	assert_non_null(strstr(buf, "channel_binding=require binds the SCRAM exchange to the TLS "
				    "channel"));
	assert_non_null(strstr(buf, "use sslmode=verify-full"));
	assert_null(strstr(buf, "s3cr3t"));

	assert_false(conninfo_tls_warning(DB_URL, buf, sizeof buf));
	assert_string_equal(buf, "");
	assert_false(
	    conninfo_tls_warning("host=/tmp dbname=app user=app sslmode=require", buf, sizeof buf));
	assert_false(conninfo_tls_warning("not a conninfo", buf, sizeof buf));
	assert_false(conninfo_tls_warning(NULL, buf, sizeof buf));
	buf[0] = 'Z';
	assert_false(conninfo_tls_warning("host=db sslmode=require", buf, 0));
	assert_int_equal(buf[0], 'Z');
}

static void test_libpq_knows(void **state)
{
	(void)state;
	assert_true(conninfo_libpq_knows("host"));
	assert_true(conninfo_libpq_knows("channel_binding"));
	assert_int_equal(conninfo_libpq_knows("sslnegotiation"), PQlibVersion() >= 170000);
	assert_false(conninfo_libpq_knows("bogus_option"));
	assert_false(conninfo_libpq_knows(""));
}

static void test_target(void **state)
{
	static const struct {
		const char *url;
		const char *target;
	} cases[] = {
		{ DB_URL, "db.example.com:5432/app" },
		{ "postgres://u:" SECRET_ENC "@db:6543/appdb?sslmode=require", "db:6543/appdb" },
		{ "host=db.example.com port=5433 dbname=x user=u password=" SECRET,
		  "db.example.com:5433/x" },
		{ "postgres://u@[::1]/app", "[::1]:5432/app" },
		{ "host=/var/run/postgresql dbname=app user=app", "/var/run/postgresql:5432/app" },
		{ "hostaddr=10.0.0.5 dbname=app user=app", "10.0.0.5:5432/app" },
		{ "not a conninfo " SECRET, "(invalid)" },
	};
	char out[128];

	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		conninfo_target(cases[i].url, out, sizeof out);
		assert_string_equal(out, cases[i].target);
		assert_null(strstr(out, "s3cr3t"));
	}
	conninfo_target(NULL, out, sizeof out);
	assert_string_equal(out, "(invalid)");
	conninfo_target(DB_URL, out, 8);
	assert_string_equal(out, "db.exam");
	out[0] = 'Z';
	conninfo_target(DB_URL, out, 0);
	assert_int_equal(out[0], 'Z');
}

/* Port lists as libpq takes them: each entry empty or 1..65535, digits only
 * (leading zeros allowed, as strtol reads them). */
static void test_check_ports(void **state)
{
	static const struct {
		const char *port;
		bool ok;
	} cases[] = {
		{ "5432", true },
		{ "1", true },
		{ "65535", true },
		{ "000007", true },
		{ "5432,", true },
		{ ",5433", true },
		{ "1,2,3", true },
		{ "0", false },
		{ "65536", false },
		{ "-1", false },
		{ "+5", false },
		{ " 5", false },
		{ "5x", false },
		{ "1,0", false },
		{ "000000000000001", true },
		{ "0000000000000001", false }, /* 16 digits: refused unread */
	};
	char url[128];

	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct problems p = { NULL, 0 };
		bool require;

		snprintf(url, sizeof url, "host=db dbname=d user=u sslmode=require port='%s'",
			 cases[i].port);
		print_message("port [%s]\n", cases[i].port);
		assert_int_equal(conninfo_check(url, &p, &require), cases[i].ok ? 0 : -1);
		if (!cases[i].ok)
			assert_true(has(&p, "port must be an integer between 1 and 65535", false));
		problems_free(&p);
	}
}

/* Regression: pgconn freed libpq's parse-error text unwiped, and libpq
 * quotes the offending token, here the password itself. */
static void test_parse_error_text_is_wiped(void **state)
{
	/* libpq's texts: invalid percent-encoded token: "hunter2%zz", and
	 * invalid URI query parameter: "hunter2". */
	static const char *const bad[] = {
		"postgresql://u@h/db?password=hunter2%zz",
		"postgresql://u@h/db?hunter2=x",
	};

	(void)state;
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		pqfreemem_calls = pqfreemem_unwiped = 0;
		assert_null(conninfo_parse(bad[i]));
		assert_int_equal(pqfreemem_calls, 1);
		assert_int_equal(pqfreemem_unwiped, 0);
	}
}

static void test_parse_and_free(void **state)
{
	PQconninfoOption *opts;
	const char *pw = NULL;

	(void)state;
	opts = conninfo_parse("host=h dbname=d user=u password=hunter2");
	assert_non_null(opts);
	for (PQconninfoOption *o = opts; o->keyword != NULL; o++)
		if (strcmp(o->keyword, "password") == 0)
			pw = o->val;
	assert_string_equal(pw, "hunter2");
	conninfo_free(opts);
	conninfo_free(NULL);
}

/* What a problem line shows: the password hidden, control bytes escaped,
 * the length bounded. */
static void test_quote(void **state)
{
	char buf[PROBLEMS_QUOTE_BUF], big[2048];

	(void)state;
	conninfo_quote(DB_URL, buf, sizeof buf);
	assert_string_equal(buf, "postgres://app:****@db.example.com/app?sslmode=verify-full");
	conninfo_quote("host=\"db\"\n password=" SECRET, buf, sizeof buf);
	assert_string_equal(buf, "host=\\\"db\\\"\\x0a password=****");
	snprintf(big, sizeof big, "host=db password=%s dbname=%01500d", SECRET, 7);
	conninfo_quote(big, buf, sizeof buf);
	assert_int_equal(strlen(buf), PROBLEMS_QUOTE_MAX + 3);
	assert_null(strstr(buf, "s3cr3t"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_check_rules, reset_env),
		cmocka_unit_test_setup(test_check_ports, reset_env),
		cmocka_unit_test_setup(test_unknown_options, reset_env),
		cmocka_unit_test_setup(test_ca_file, reset_env),
		cmocka_unit_test_setup(test_missing_bundle, reset_env),
		cmocka_unit_test_setup(test_ssl_cert_file_unreadable, reset_env),
		cmocka_unit_test_setup(test_tls_warning, reset_env),
		cmocka_unit_test_setup(test_libpq_knows, reset_env),
		cmocka_unit_test_setup(test_target, reset_env),
		cmocka_unit_test_setup(test_parse_error_text_is_wiped, reset_env),
		cmocka_unit_test_setup(test_parse_and_free, reset_env),
		cmocka_unit_test_setup(test_quote, reset_env),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
