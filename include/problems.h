/* problems: the list of operator-facing problem lines that configuration
 * checks fill (every problem is collected; the caller decides to print and
 * exit), and the quoting of a value inside such a line. */
#ifndef NEONFCGI_PROBLEMS_H
#define NEONFCGI_PROBLEMS_H

#include <stddef.h>

#define PROBLEMS_QUOTE_MAX 160 /* value bytes quoted in a line; the rest is "..." */
#define PROBLEMS_QUOTE_BUF (PROBLEMS_QUOTE_MAX * 4 + 8) /* room for every byte as \xNN */

struct problems {
	char **lines;
	size_t n;
};

void problems_add(struct problems *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void problems_free(struct problems *p);
/* s made fit to stand inside "..." on one line: quotes, backslashes and
 * control bytes escaped, at most PROBLEMS_QUOTE_MAX bytes of s, "..." when
 * cut; always NUL-terminates buf (len >= PROBLEMS_QUOTE_BUF holds it all). */
void problems_quote(const char *s, char *buf, size_t len);

#endif
