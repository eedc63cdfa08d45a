/* redact: connection strings (URI or libpq key=value) with every password
 * replaced by "****", the only form in which one may reach a log line, a
 * problem line or printed configuration (DESIGN.md §5). */
#ifndef NEONFCGI_REDACT_H
#define NEONFCGI_REDACT_H

#include <stddef.h>

/* Copy conninfo to out with each password hidden; always NUL-terminates out
 * (outlen > 0), and a cut never shows part of a password. NULL gives "". */
void redact_conninfo(const char *conninfo, char *out, size_t outlen);
/* Length of the "scheme://" that begins s (0: none): a string with one is
 * read as a URI, whatever the scheme. */
size_t redact_uri_prefix_len(const char *s, size_t len);

#endif
