/* Unit tests of app/redact.c: a table of connection strings and their
 * redacted form, truncation that never shows a prefix of a password, and
 * libpq itself as the oracle of what the password is. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redact.h"

#define SECRET     "s3cr3t-P@ss:w0rd"
#define SECRET_ENC "s3cr3t-P%40ss%3Aw0rd"

static const struct {
	const char *in;
	const char *out;
} redact_cases[] = {
	{ "postgres://app:" SECRET "@db.example.com:5432/app?sslmode=require",
	  "postgres://app:****@db.example.com:5432/app?sslmode=require" },
	{ "postgresql://app:" SECRET_ENC "@db/app", "postgresql://app:****@db/app" },
	{ "postgres://app:p%2Fa%3Fs%23s@db/app", "postgres://app:****@db/app" },
	{ "postgres://app:pa/ss?x@db/app", "postgres://app:****@db/app" },
	{ "postgres://app@db/app?sslmode=require", "postgres://app@db/app?sslmode=require" },
	{ "postgres://db/app?user=app&password=" SECRET "&sslmode=require",
	  "postgres://db/app?user=app&password=****&sslmode=require" },
	{ "postgres://db/app?pass%77ord=" SECRET_ENC, "postgres://db/app?pass%77ord=****" },
	{ "postgres://db/app?sslpassword=" SECRET_ENC, "postgres://db/app?sslpassword=****" },
	{ "postgres://app:" SECRET_ENC "@db/app?password=" SECRET_ENC,
	  "postgres://app:****@db/app?password=****" },
	{ "mysql://u:" SECRET "@h/d", "mysql://u:****@h/d" },
	{ "host=db password=" SECRET " dbname=app", "host=db password=**** dbname=app" },
	{ "host=db password = '" SECRET " with \\' quote' dbname=app",
	  "host=db password = **** dbname=app" },
	{ "password=s3cr3t\\ P@ss host=db", "password=**** host=db" },
	{ "host=db sslpassword=" SECRET, "host=db sslpassword=****" },
	/* libpq 18's other secrets, shown redacted when an older libpq refuses them */
	{ "postgres://db/app?scram_client_key=" SECRET_ENC "&oauth_client_secret=" SECRET_ENC,
	  "postgres://db/app?scram_client_key=****&oauth_client_secret=****" },
	{ "host=db scram_server_key=" SECRET, "host=db scram_server_key=****" },
	{ "host=db PASSWORD=" SECRET, "host=db PASSWORD=****" },
	{ "host=db password=''", "host=db password=****" },
	{ "host=db password=", "host=db password=" },
	{ "host=db password='unterminated " SECRET, "host=db password=****" },
	{ "host=db password " SECRET, "host=db ****" },
	{ "host=db dbname='postgres://u:" SECRET "@h/d'",
	  "host=db dbname='postgres://u:****@h/d'" },
	{ " postgres://u:" SECRET "@h/d?sslmode=require", " ****" },
	/* found by a fuzz run: libpq's query began at the second '?' */
	{ "postgres://[?]u@=?password=" SECRET_ENC, "postgres://[?]u@=?password=****" },
	{ "", "" },
	{ "postgres://", "postgres://" },
	{ "postgres://u:@h/d", "postgres://u:@h/d" },
};

static void test_cases(void **state)
{
	char out[512];

	(void)state;
	for (size_t i = 0; i < sizeof redact_cases / sizeof redact_cases[0]; i++) {
		redact_conninfo(redact_cases[i].in, out, sizeof out);
		if (strcmp(out, redact_cases[i].out) != 0) {
			print_message("case %zu: [%s] -> [%s], want [%s]\n", i, redact_cases[i].in,
				      out, redact_cases[i].out);
			fail();
		}
	}
	redact_conninfo(NULL, out, sizeof out);
	assert_string_equal(out, "");
}

/* Truncation never overruns the buffer, always terminates, never shows a
 * prefix of the password. */
static void test_truncation(void **state)
{
	const char *url = "postgres://app:" SECRET "@db.example.com/app?password=" SECRET;
	char buf[128];

	(void)state;
	for (size_t n = 0; n < 100; n++) {
		memset(buf, 'Z', sizeof buf);
		redact_conninfo(url, buf, n);
		assert_int_equal(buf[n], 'Z');
		if (n > 0) {
			assert_true(strlen(buf) < n);
			assert_null(strstr(buf, "s3c"));
		} else {
			assert_int_equal(buf[0], 'Z');
		}
	}
}

/* What counts as a URI: any "scheme://", so an unsupported scheme is still
 * redacted as one. */
static void test_uri_prefix(void **state)
{
	static const struct {
		const char *s;
		size_t len;
	} cases[] = {
		{ "postgres://h/d", 11 },
		{ "postgresql://", 13 },
		{ "mysql://u:p@h", 8 },
		{ "a+b-c.d://", 10 },
		{ "postgres:/h", 0 },
		{ "1abc://h", 0 },
		{ "://h", 0 },
		{ "host=h", 0 },
		{ "", 0 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		assert_int_equal(redact_uri_prefix_len(cases[i].s, strlen(cases[i].s)),
				 cases[i].len);
	/* only the first len bytes are looked at */
	assert_int_equal(redact_uri_prefix_len("postgres://", 10), 0);
}

/* libpq's value quoting for key=value strings. */
static void kv_quote(const char *s, char *out, size_t len)
{
	size_t o = 0;

	out[o++] = '\'';
	for (; *s != '\0' && o + 3 < len; s++) {
		if (*s == '\'' || *s == '\\')
			out[o++] = '\\';
		out[o++] = *s;
	}
	out[o++] = '\'';
	out[o] = '\0';
}

static void percent_encode(const char *s, char *out, size_t len)
{
	size_t o = 0;

	for (; *s != '\0' && o + 4 < len; s++) {
		if ((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		    (*s >= '0' && *s <= '9'))
			out[o++] = *s;
		else
			o += (size_t)snprintf(out + o, len - o, "%%%02X", (unsigned char)*s);
	}
	out[o] = '\0';
}

/* The password libpq itself reads from url, or NULL. */
static char *libpq_password(const char *url)
{
	char *err = NULL, *pw = NULL;
	PQconninfoOption *opts = PQconninfoParse(url, &err);

	if (opts == NULL) {
		PQfreemem(err);
		return NULL;
	}
	for (PQconninfoOption *o = opts; o->keyword != NULL; o++)
		if (strcmp(o->keyword, "password") == 0 && o->val != NULL)
			pw = strdup(o->val);
	PQconninfoFree(opts);
	return pw;
}

/* The fuzzer's oracle on hand-picked hard passwords: whatever libpq reads
 * as the password never appears in the redacted string. */
static void test_libpq_oracle(void **state)
{
	static const char *const passwords[] = {
		SECRET,          "p@ss@word@",       "pass:word:",
		"sp ace s3cr3t", "quo'te\\back",     "p/ss?w#rd&x=y",
		"%41%42-s3cr3t", "s3cr3t=host=evil", "UNICODE-\xc3\xa9t\xc3\xa9-s3cr3t",
	};
	char enc[256], quoted[256], url[600], out[1024];

	(void)state;
	for (size_t i = 0; i < sizeof passwords / sizeof passwords[0]; i++) {
		const char *pw = passwords[i];
		char *forms[6];
		size_t nforms = 0;

		percent_encode(pw, enc, sizeof enc);
		kv_quote(pw, quoted, sizeof quoted);
		snprintf(url, sizeof url,
			 "postgres://app:%s@db.example.com:5432/app?sslmode=require", enc);
		forms[nforms++] = strdup(url);
		snprintf(url, sizeof url, "postgresql://app@db/app?password=%s&sslmode=require",
			 enc);
		forms[nforms++] = strdup(url);
		snprintf(url, sizeof url, "host=db user=app password=%s dbname=app", quoted);
		forms[nforms++] = strdup(url);
		snprintf(url, sizeof url, "password=%s", quoted);
		forms[nforms++] = strdup(url);
		snprintf(url, sizeof url, "postgres://app:%s@db/app", pw); /* raw, unencoded */
		forms[nforms++] = strdup(url);
		for (size_t f = 0; f < nforms; f++) {
			char *seen = libpq_password(forms[f]);

			redact_conninfo(forms[f], out, sizeof out);
			if (f < 4) {
				assert_non_null(seen); /* the form is right: libpq finds it */
				assert_string_equal(seen, pw);
			}
			/* the raw form may give libpq a one-letter password, as in
			 * "p@ss@word@": only the whole one is checked there */
			if ((f < 4 && strstr(out, seen) != NULL) || strstr(out, pw) != NULL ||
			    strstr(out, "s3cr3t") != NULL) {
				print_message("leak: [%s] -> [%s]\n", forms[f], out);
				fail();
			}
			free(seen);
			free(forms[f]);
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cases),
		cmocka_unit_test(test_truncation),
		cmocka_unit_test(test_uri_prefix),
		cmocka_unit_test(test_libpq_oracle),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
