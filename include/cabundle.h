/* cabundle: the system CA bundle that verifies the database server when
 * DATABASE_URL names no sslrootcert (or sslrootcert=system), looked for as
 * DESIGN.md §5 says: SSL_CERT_FILE, the linked OpenSSL's default file, then
 * the usual distribution paths. */
#ifndef NEONFCGI_CABUNDLE_H
#define NEONFCGI_CABUNDLE_H

#include <stdbool.h>

/* Which rule found the bundle. */
enum cabundle_source {
	CABUNDLE_NONE,
	CABUNDLE_SSL_CERT_FILE,   /* the SSL_CERT_FILE environment variable */
	CABUNDLE_OPENSSL_DEFAULT, /* X509_get_default_cert_file() */
	CABUNDLE_DISTRIBUTION,    /* one of the usual distribution paths */
};

/* The first path that usable() accepts: ssl_cert_file (NULL or "" when
 * SSL_CERT_FILE is unset), then openssl_default, then the distribution
 * paths (Debian/Ubuntu, RHEL/CloudLinux/Alma, SUSE, Alpine); NULL when none.
 * *source says which rule matched. Pure: usable() is the only probe. */
const char *cabundle_pick(const char *ssl_cert_file, const char *openssl_default,
			  bool (*usable)(const char *path), enum cabundle_source *source);
/* cabundle_pick with this process's SSL_CERT_FILE, the linked OpenSSL's
 * default file and cabundle_readable. */
const char *cabundle_find(enum cabundle_source *source);
/* A regular file (symbolic links followed) that this process may read. */
bool cabundle_readable(const char *path);
/* "SSL_CERT_FILE", "OpenSSL default", "distribution path" or "none". */
const char *cabundle_source_name(enum cabundle_source s);

#endif
