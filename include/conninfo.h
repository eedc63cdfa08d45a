/* conninfo: libpq connection strings (DATABASE_URL). The one place they are
 * parsed with PQconninfoParse and the parsed options wiped and freed; what
 * DESIGN.md §2 and §5 require one to say, options checked against the
 * linked libpq; the CA file that verifies the server; its target for the
 * banner. */
#ifndef NEONFCGI_CONNINFO_H
#define NEONFCGI_CONNINFO_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <libpq-fe.h>

struct problems;

/* The forms DATABASE_URL may take, as operator messages name them. */
#define CONNINFO_FORMS "postgres:// or postgresql:// URI, or libpq key=value string"

/* PQconninfoParse, or NULL when conninfo cannot be parsed: libpq's error text
 * may quote the password, so it is wiped unread. Release with conninfo_free. */
PQconninfoOption *conninfo_parse(const char *conninfo) __attribute__((warn_unused_result));
/* Overwrite every value (one is the password), then free; NULL is fine. */
void conninfo_free(PQconninfoOption *opts);
/* 0 if conninfo is an acceptable DATABASE_URL: a postgres scheme if a URI,
 * parsable, naming host, dbname and user, valid ports, and sslmode require,
 * verify-ca or verify-full unless every host is a unix socket; every option
 * one the linked libpq knows (else the libpq version it needs, if any), and
 * enumerated ones with a valid value; sslrootcert=system with verify-full;
 * a CA bundle found when verification needs the system's. Otherwise -1
 * with each problem appended to p, the value shown redacted.
 * *sslmode_require: a TCP host with sslmode=require, which encrypts without
 * authenticating the server (start-up warns about it). */
int conninfo_check(const char *conninfo, struct problems *p, bool *sslmode_require)
    __attribute__((warn_unused_result));
/* The start-up warning about sslmode=require over TCP (DESIGN.md §5) in buf;
 * false, buf empty, when DATABASE_URL calls for none. */
bool conninfo_tls_warning(const char *conninfo, char *buf, size_t len);
/* Whether the linked libpq knows keyword (PQconndefaults). */
bool conninfo_libpq_knows(const char *keyword);

/* How the server's certificate is verified (DESIGN.md §5). */
struct conninfo_ca {
	bool verify;              /* sslmode verify-ca or verify-full (PGSSLMODE if unset) */
	bool system;              /* the system bundle stands in: no sslrootcert (nor
				     PGSSLROOTCERT), or sslrootcert=system */
	bool named_system;        /* sslrootcert=system: libpq < 16 would read a file "system" */
	bool implied_verify_full; /* sslrootcert=system and no sslmode: verify-full, as in
				     libpq 16 */
	char file[PATH_MAX];      /* the CA file; "" when not verifying or none found */
	const char *source;       /* "sslrootcert", "PGSSLROOTCERT" or cabundle_source_name();
				     NULL when file is "" */
};
/* Fill ca for parsed options; looks in the environment and for the system
 * bundle (cabundle_find). */
void conninfo_ca_of(const PQconninfoOption *opts, struct conninfo_ca *ca);
/* The same for a connection string: the CA file that will verify the server
 * (for the banner and doctor). -1, ca zeroed, when conninfo is unparsable. */
int conninfo_ca(const char *conninfo, struct conninfo_ca *ca);
/* conninfo as a problem line may show it: redacted, escaped and bounded
 * (problems_quote); always NUL-terminates buf. */
void conninfo_quote(const char *conninfo, char *buf, size_t len);
/* "host:port/dbname" (IPv6 in brackets), no user or password; "(invalid)"
 * when conninfo is NULL or unparsable. Always NUL-terminates (outlen > 0). */
void conninfo_target(const char *conninfo, char *out, size_t outlen);

#endif
