/* conninfo: libpq connection strings (DATABASE_URL). The one place they are
 * parsed with PQconninfoParse and the parsed options wiped and freed; what
 * DESIGN.md §2 requires one to say; and its target for the banner. */
#ifndef NEONFCGI_CONNINFO_H
#define NEONFCGI_CONNINFO_H

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
 * verify-ca or verify-full unless every host is a unix socket. Otherwise -1
 * with each problem appended to p, the value shown redacted.
 * *sslmode_require: a TCP host with sslmode=require, which encrypts without
 * authenticating the server (start-up warns about it). */
int conninfo_check(const char *conninfo, struct problems *p, bool *sslmode_require)
    __attribute__((warn_unused_result));
/* conninfo as a problem line may show it: redacted, escaped and bounded
 * (problems_quote); always NUL-terminates buf. */
void conninfo_quote(const char *conninfo, char *buf, size_t len);
/* "host:port/dbname" (IPv6 in brackets), no user or password; "(invalid)"
 * when conninfo is NULL or unparsable. Always NUL-terminates (outlen > 0). */
void conninfo_target(const char *conninfo, char *out, size_t outlen);

#endif
