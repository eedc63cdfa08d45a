/* envfile: a strict, line-based parser of KEY=value env files (DESIGN.md §2).
 * Values may hold passwords: problems name the file and the line but never
 * quote a value, and every buffer that held file text is wiped. */
#include "envfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "problems.h"
#include "xalloc.h"

#define ENVFILE_MAX (1024 * 1024) /* an env file is a few dozen lines */

/* Where a problem is: the file's name and the 1-based line. */
struct where {
	const char *name;
	size_t line;
	struct problems *p;
};

static int fail(const struct where *w, const char *what)
{
	problems_add(w->p, "ENV_FILE %s line %zu: %s", w->name, w->line, what);
	return -1;
}

static bool is_blank(char c)
{
	return c == ' ' || c == '\t';
}

static size_t skip_blank(const char *s, size_t n, size_t i)
{
	while (i < n && is_blank(s[i]))
		i++;
	return i;
}

static bool is_key_char(char c, bool first)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_' ||
	       (!first && c >= '0' && c <= '9');
}

/* "export KEY=..." as in shell files; "export=1" stays a key named export. */
static size_t skip_export(const char *s, size_t n, size_t i)
{
	size_t j;

	if (n - i < 7 || memcmp(s + i, "export", 6) != 0 || !is_blank(s[i + 6]))
		return i;
	j = skip_blank(s, n, i + 6);
	return j < n && is_key_char(s[j], true) ? j : i;
}

/* After a closing quote only blanks and a comment may follow. */
static int check_trailer(const char *s, size_t n, size_t i, const struct where *w)
{
	i = skip_blank(s, n, i);
	if (i < n && s[i] != '#')
		return fail(w, "unexpected text after the closing quote");
	return 0;
}

static int parse_single(const char *s, size_t n, size_t i, char **out, const struct where *w)
{
	const char *close = memchr(s + i + 1, '\'', n - i - 1);

	if (close == NULL)
		return fail(w, "unterminated single quote");
	if (check_trailer(s, n, (size_t)(close - s) + 1, w) < 0)
		return -1;
	*out = xstrndup(s + i + 1, (size_t)(close - s) - i - 1);
	return 0;
}

/* Inside double quotes \" \\ and \n are escapes; any other backslash is
 * kept as written. */
static int parse_double(const char *s, size_t n, size_t i, char **out, const struct where *w)
{
	size_t size = n - i, o = 0;
	char *buf = xmalloc(size);

	for (i++; i < n && s[i] != '"'; i++) {
		if (s[i] == '\\' && i + 1 < n && strchr("\"\\n", s[i + 1]) != NULL) {
			buf[o++] = s[i + 1] == 'n' ? '\n' : s[i + 1];
			i++;
		} else {
			buf[o++] = s[i];
		}
	}
	if (i >= n || check_trailer(s, n, i + 1, w) < 0) {
		xfree_wiped_n(buf, size);
		return i >= n ? fail(w, "unterminated double quote") : -1;
	}
	buf[o] = '\0';
	*out = buf;
	return 0;
}

/* Unquoted: a '#' after a blank starts a comment; surrounding blanks go.
 * start is just after '=', so "KEY=#x" keeps "#x" and "KEY= #x" is empty. */
static char *parse_bare(const char *s, size_t n, size_t start)
{
	size_t i = skip_blank(s, n, start), end;

	for (end = i; end < n; end++)
		if (s[end] == '#' && end > start && is_blank(s[end - 1]))
			break;
	while (end > i && is_blank(s[end - 1]))
		end--;
	return xstrndup(s + i, end - i);
}

static void envfile_set(struct envfile *ef, char *key, char *value)
{
	for (size_t i = 0; i < ef->n; i++) {
		if (strcmp(ef->entries[i].key, key) == 0) {
			xfree_wiped(ef->entries[i].value);
			ef->entries[i].value = value;
			free(key);
			return;
		}
	}
	ef->entries = xrealloc(ef->entries, (ef->n + 1) * sizeof *ef->entries);
	ef->entries[ef->n].key = key;
	ef->entries[ef->n].value = value;
	ef->n++;
}

/* A valid key at i: its end and the offset of the '=' after it. */
static int parse_key(const char *s, size_t n, size_t i, size_t *end, size_t *eq,
		     const struct where *w)
{
	size_t k = i;

	while (k < n && is_key_char(s[k], k == i))
		k++;
	*end = k;
	*eq = skip_blank(s, n, k);
	if (k > i && *eq < n && s[*eq] == '=')
		return 0;
	if (memchr(s + i, '=', n - i) == NULL)
		return fail(w, "missing '=' (expected KEY=value)");
	return fail(w, "invalid variable name (must match [A-Za-z_][A-Za-z0-9_]*)");
}

static int parse_line(const char *s, size_t n, struct envfile *out, const struct where *w)
{
	size_t i = skip_blank(s, n, 0), key_end, eq, v;
	char *value = NULL;
	int rc = 0;

	if (i == n || s[i] == '#')
		return 0;
	if (memchr(s, '\0', n) != NULL)
		return fail(w, "contains a NUL byte");
	i = skip_export(s, n, i);
	if (parse_key(s, n, i, &key_end, &eq, w) < 0)
		return -1;
	v = skip_blank(s, n, eq + 1);
	if (v < n && s[v] == '\'')
		rc = parse_single(s, n, v, &value, w);
	else if (v < n && s[v] == '"')
		rc = parse_double(s, n, v, &value, w);
	else
		value = parse_bare(s, n, eq + 1);
	if (rc == 0)
		envfile_set(out, xstrndup(s + i, key_end - i), value);
	return rc;
}

int envfile_parse(const char *text, size_t len, const char *name, struct envfile *out,
		  struct problems *p)
{
	struct where w = { name, 0, p };
	size_t pos = 0;
	int rc = 0;

	out->entries = NULL;
	out->n = 0;
	if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0)
		pos = 3; /* a UTF-8 byte order mark left by some editors */
	while (pos < len) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t end = nl ? (size_t)(nl - text) : len, n = end - pos;

		w.line++;
		if (n > 0 && text[pos + n - 1] == '\r')
			n--;
		if (parse_line(text + pos, n, out, &w) < 0)
			rc = -1;
		pos = end + 1;
	}
	return rc;
}

/* Read all of fd, at most ENVFILE_MAX bytes: 0, -1 with errno, or 1 when the
 * file is larger. Growing copies wipe the buffer they leave behind. */
static int read_bounded(int fd, char **buf, size_t *len)
{
	size_t cap = 4096, n = 0;
	char *b = xmalloc(cap);
	ssize_t r = 0;

	for (;;) {
		if (n == cap) {
			char *bigger = xmalloc(cap * 2);

			memcpy(bigger, b, n);
			xfree_wiped_n(b, cap);
			b = bigger;
			cap *= 2;
		}
		r = read(fd, b + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0 || (n += (size_t)r) > ENVFILE_MAX)
			break;
	}
	*buf = b;
	*len = n;
	return r < 0 ? -1 : n > ENVFILE_MAX ? 1 : 0;
}

int envfile_read(const char *path, struct envfile *out, struct problems *p)
{
	char *buf;
	size_t len;
	int fd, rc;

	out->entries = NULL;
	out->n = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		problems_add(p, "ENV_FILE=\"%s\": cannot open: %s", path, strerror(errno));
		return -1;
	}
	rc = read_bounded(fd, &buf, &len);
	if (rc < 0)
		problems_add(p, "ENV_FILE=\"%s\": cannot read: %s", path, strerror(errno));
	else if (rc > 0)
		problems_add(p,
			     "ENV_FILE=\"%s\": larger than %d bytes (1 MiB); an env file is "
			     "a few lines of KEY=value",
			     path, ENVFILE_MAX);
	else
		rc = envfile_parse(buf, len, path, out, p);
	close(fd);
	xfree_wiped_n(buf, len);
	return rc == 0 ? 0 : -1;
}

const char *envfile_get(const struct envfile *ef, const char *key)
{
	for (size_t i = 0; ef != NULL && i < ef->n; i++)
		if (strcmp(ef->entries[i].key, key) == 0)
			return ef->entries[i].value;
	return NULL;
}

void envfile_free(struct envfile *ef)
{
	while (ef->n > 0) {
		struct envfile_entry *e = &ef->entries[--ef->n];

		free(e->key);
		xfree_wiped(e->value); /* values may be passwords */
	}
	free(ef->entries);
	ef->entries = NULL;
}
