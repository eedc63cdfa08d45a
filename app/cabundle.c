/* cabundle: finding the system CA bundle (DESIGN.md §5). libpq before 16
 * has no sslrootcert=system, and a service account has no
 * ~/.postgresql/root.crt, so verify-full needs a file named for it; where
 * distributions keep that file differs (shared hosts often run CloudLinux
 * or AlmaLinux, not Debian). */
#include "cabundle.h"

#include <stddef.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/x509.h>

/* In the order tried; the first that exists wins. */
static const char *const distribution_paths[] = {
	"/etc/ssl/certs/ca-certificates.crt",                /* Debian, Ubuntu */
	"/etc/pki/tls/certs/ca-bundle.crt",                  /* RHEL, CloudLinux, Alma */
	"/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem", /* RHEL 7+ extracted */
	"/etc/ssl/ca-bundle.pem",                            /* SUSE */
	"/etc/ssl/cert.pem",                                 /* Alpine */
	NULL,
};

static bool candidate(const char *path, bool (*usable)(const char *path))
{
	return path != NULL && *path != '\0' && usable(path);
}

const char *cabundle_pick(const char *ssl_cert_file, const char *openssl_default,
			  bool (*usable)(const char *path), enum cabundle_source *source)
{
	*source = CABUNDLE_SSL_CERT_FILE;
	if (candidate(ssl_cert_file, usable))
		return ssl_cert_file;
	*source = CABUNDLE_OPENSSL_DEFAULT;
	if (candidate(openssl_default, usable))
		return openssl_default;
	*source = CABUNDLE_DISTRIBUTION;
	for (size_t i = 0; distribution_paths[i] != NULL; i++)
		if (usable(distribution_paths[i]))
			return distribution_paths[i];
	*source = CABUNDLE_NONE;
	return NULL;
}

bool cabundle_readable(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, R_OK) == 0;
}

const char *cabundle_find(enum cabundle_source *source)
{
	return cabundle_pick(getenv("SSL_CERT_FILE"), X509_get_default_cert_file(),
			     cabundle_readable, source);
}

const char *cabundle_source_name(enum cabundle_source s)
{
	switch (s) {
	case CABUNDLE_SSL_CERT_FILE: return "SSL_CERT_FILE";
	case CABUNDLE_OPENSSL_DEFAULT: return "OpenSSL default";
	case CABUNDLE_DISTRIBUTION: return "distribution path";
	case CABUNDLE_NONE: break;
	}
	return "none";
}
