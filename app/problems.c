/* problems: a growable list of formatted lines, and value quoting for them. */
#include "problems.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xalloc.h"

void problems_add(struct problems *p, const char *fmt, ...)
{
	va_list ap;
	char *line;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		abort();
	line = xmalloc((size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(line, (size_t)n + 1, fmt, ap);
	va_end(ap);
	xstrv_push(&p->lines, &p->n, line);
}

void problems_free(struct problems *p)
{
	xstrv_free(&p->lines, &p->n);
}

void problems_quote(const char *s, char *buf, size_t len)
{
	size_t o = 0, i, n = strnlen(s, PROBLEMS_QUOTE_MAX + 1);

	if (len == 0)
		return;
	for (i = 0; i < n && i < PROBLEMS_QUOTE_MAX; i++) {
		unsigned char c = (unsigned char)s[i];

		if (o + 5 >= len)
			break;
		if (c == '"' || c == '\\')
			o += (size_t)snprintf(buf + o, len - o, "\\%c", c);
		else if (c < 0x20 || c == 0x7f)
			o += (size_t)snprintf(buf + o, len - o, "\\x%02x", c);
		else
			buf[o++] = (char)c;
	}
	if (i < n && o + 4 <= len)
		o += (size_t)snprintf(buf + o, len - o, "...");
	buf[o] = '\0';
}
