/* Unit tests of app/cabundle.c: the order in which CA bundles are looked
 * for (one table, with a fake "usable" check that records what was asked),
 * the readability check, and the real search in this process. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/x509.h>

#include "cabundle.h"

#define DEBIAN  "/etc/ssl/certs/ca-certificates.crt"
#define RHEL    "/etc/pki/tls/certs/ca-bundle.crt"
#define RHEL7   "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem"
#define SUSE    "/etc/ssl/ca-bundle.pem"
#define ALPINE  "/etc/ssl/cert.pem"
#define ENVFILE "/srv/ca/env.pem"
#define OSSL    "/usr/lib/ssl/cert.pem"

/* The fake file system: the paths that "exist", and what was asked. */
static const char *const *present;
static const char *asked[16];
static size_t nasked;

static bool fake_usable(const char *path)
{
	if (nasked < sizeof asked / sizeof asked[0])
		asked[nasked++] = path;
	for (size_t i = 0; present[i] != NULL; i++)
		if (strcmp(present[i], path) == 0)
			return true;
	return false;
}

struct pick_case {
	const char *ssl_cert_file, *openssl_default;
	const char *present[8];
	const char *want; /* NULL: none found */
	enum cabundle_source source;
	size_t probes; /* paths asked before the answer */
};

static const struct pick_case pick_cases[] = {
	/* SSL_CERT_FILE first, whatever else exists */
	{ ENVFILE, OSSL, { ENVFILE, OSSL, DEBIAN, NULL }, ENVFILE, CABUNDLE_SSL_CERT_FILE, 1 },
	/* then the linked OpenSSL's default file */
	{ NULL, OSSL, { OSSL, DEBIAN, NULL }, OSSL, CABUNDLE_OPENSSL_DEFAULT, 1 },
	{ "", OSSL, { OSSL, NULL }, OSSL, CABUNDLE_OPENSSL_DEFAULT, 1 },
	/* an SSL_CERT_FILE that cannot be read is passed over here (check-config
	 * reports it) */
	{ ENVFILE, OSSL, { OSSL, NULL }, OSSL, CABUNDLE_OPENSSL_DEFAULT, 2 },
	/* then the distribution paths, in order */
	{ NULL, OSSL, { DEBIAN, RHEL, NULL }, DEBIAN, CABUNDLE_DISTRIBUTION, 2 },
	{ NULL, NULL, { RHEL, RHEL7, SUSE, ALPINE, NULL }, RHEL, CABUNDLE_DISTRIBUTION, 2 },
	{ NULL, OSSL, { RHEL7, SUSE, ALPINE, NULL }, RHEL7, CABUNDLE_DISTRIBUTION, 4 },
	{ NULL, OSSL, { SUSE, ALPINE, NULL }, SUSE, CABUNDLE_DISTRIBUTION, 5 },
	{ NULL, OSSL, { ALPINE, NULL }, ALPINE, CABUNDLE_DISTRIBUTION, 6 },
	{ NULL, "", { ALPINE, NULL }, ALPINE, CABUNDLE_DISTRIBUTION, 5 },
	/* nothing */
	{ ENVFILE, OSSL, { NULL }, NULL, CABUNDLE_NONE, 7 },
	{ NULL, NULL, { "/etc/ssl/other.pem", NULL }, NULL, CABUNDLE_NONE, 5 },
};

static void test_pick_order(void **state)
{
	/* Every path in the order it is asked when none exists. */
	static const char *const order[] = { ENVFILE, OSSL, DEBIAN, RHEL, RHEL7, SUSE, ALPINE };

	(void)state;
	for (size_t i = 0; i < sizeof pick_cases / sizeof pick_cases[0]; i++) {
		const struct pick_case *c = &pick_cases[i];
		enum cabundle_source source = (enum cabundle_source)99;
		const char *got;

		print_message("case %zu\n", i);
		present = c->present;
		nasked = 0;
		got = cabundle_pick(c->ssl_cert_file, c->openssl_default, fake_usable, &source);
		if (c->want == NULL)
			assert_null(got);
		else
			assert_string_equal(got, c->want);
		assert_int_equal(source, c->source);
		assert_int_equal(nasked, c->probes);
	}
	/* the full order, when nothing exists */
	present = (const char *const[]){ NULL };
	nasked = 0;
	{
		enum cabundle_source source;

		assert_null(cabundle_pick(ENVFILE, OSSL, fake_usable, &source));
	}
	assert_int_equal(nasked, sizeof order / sizeof order[0]);
	for (size_t i = 0; i < nasked; i++)
		assert_string_equal(asked[i], order[i]);
}

static void test_readable(void **state)
{
	char path[] = "/tmp/test_cabundle_XXXXXX";
	int fd = mkstemp(path);

	(void)state;
	assert_true(fd >= 0);
	close(fd);
	assert_true(cabundle_readable(path));
	assert_false(cabundle_readable("/tmp")); /* a directory */
	assert_false(cabundle_readable("/nonexistent/ca.pem"));
	assert_false(cabundle_readable(""));
	if (geteuid() != 0) { /* root reads any file */
		assert_int_equal(chmod(path, 0), 0);
		assert_false(cabundle_readable(path));
	}
	unlink(path);
}

/* The real search: SSL_CERT_FILE wins when readable, else the linked
 * OpenSSL's default file when it exists. */
static void test_find_in_this_process(void **state)
{
	char path[] = "/tmp/test_cabundle_XXXXXX";
	int fd = mkstemp(path);
	enum cabundle_source source;
	const char *found;

	(void)state;
	assert_true(fd >= 0);
	close(fd);
	setenv("SSL_CERT_FILE", path, 1);
	assert_string_equal(cabundle_find(&source), path);
	assert_int_equal(source, CABUNDLE_SSL_CERT_FILE);
	unsetenv("SSL_CERT_FILE");
	unlink(path);
	found = cabundle_find(&source);
	if (cabundle_readable(X509_get_default_cert_file())) {
		assert_string_equal(found, X509_get_default_cert_file());
		assert_int_equal(source, CABUNDLE_OPENSSL_DEFAULT);
	} else if (found != NULL) {
		assert_int_equal(source, CABUNDLE_DISTRIBUTION);
	}
}

static void test_source_names(void **state)
{
	(void)state;
	assert_string_equal(cabundle_source_name(CABUNDLE_SSL_CERT_FILE), "SSL_CERT_FILE");
	assert_string_equal(cabundle_source_name(CABUNDLE_OPENSSL_DEFAULT), "OpenSSL default");
	assert_string_equal(cabundle_source_name(CABUNDLE_DISTRIBUTION), "distribution path");
	assert_string_equal(cabundle_source_name(CABUNDLE_NONE), "none");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pick_order),
		cmocka_unit_test(test_readable),
		cmocka_unit_test(test_find_in_this_process),
		cmocka_unit_test(test_source_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
