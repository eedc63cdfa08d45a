/* log: one line per event on stderr, written with a single write(2) so lines
 * from the master and its workers never interleave mid-line.
 *
 * In json mode the trailing key=value fields of a message become keys next to
 * ts, level, pid and msg (a field named like one of those becomes
 * field_<name>); unquoted values in number syntax become JSON numbers, quoted
 * ones stay strings (so quote a version: "15.10" is not the number 15.1). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "clock.h"
#include "log.h"
#include "xalloc.h"

#define LOG_LINE_MAX 4096

static enum log_level min_level = LOG_LEVEL_INFO;
static enum log_format format = LOG_FORMAT_TEXT;

static const char *const level_names[] = { "debug", "info", "warn", "error" };

void log_init(enum log_level level, enum log_format fmt)
{
	min_level = level;
	format = fmt;
}

/* A field starts at a word of the form key=…, key being [a-z_][a-z0-9_]*. */
static bool is_field_start(const char *p)
{
	if (!((*p >= 'a' && *p <= 'z') || *p == '_'))
		return false;
	while ((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_')
		p++;
	return *p == '=';
}

/* Parse one value at p (quoted with \" escapes, or up to a space) into out. */
static const char *parse_value(const char *p, char *out, size_t outlen, bool *quoted)
{
	size_t n = 0;

	*quoted = (*p == '"');
	if (*quoted)
		p++;
	while (*p && (*quoted ? *p != '"' : *p != ' ')) {
		if (*quoted && *p == '\\' && p[1])
			p++;
		if (n + 1 < outlen)
			out[n++] = *p;
		p++;
	}
	out[n] = '\0';
	if (*quoted && *p == '"')
		p++;
	return p;
}

/* Skip one token (a field, quoted value included, or a plain word). */
static const char *skip_token(const char *p)
{
	if (is_field_start(p)) {
		p = strchr(p, '=') + 1;
		if (*p == '"') {
			for (p++; *p && *p != '"'; p++)
				if (*p == '\\' && p[1])
					p++;
			return *p ? p + 1 : p;
		}
	}
	while (*p && *p != ' ')
		p++;
	return p;
}

/* The fields are the trailing run of key=value tokens: "free text key=v
 * key=\"quoted value\"". A key=value inside the free text (followed by plain
 * words) stays part of the message. Returns where the fields start. */
static const char *find_fields(const char *text)
{
	const char *p = text, *start = NULL;

	while (*p) {
		while (*p == ' ')
			p++;
		if (!*p)
			break;
		if (!is_field_start(p))
			start = NULL;
		else if (!start)
			start = p;
		p = skip_token(p);
	}
	return start ? start : p;
}

/* -?(0|[1-9][0-9]*) with an optional .[0-9]+ fraction; *real says which. */
static bool is_json_number(const char *v, bool *real)
{
	const char *p = v + (*v == '-');

	if (*p == '0')
		p++;
	else if (*p >= '1' && *p <= '9')
		p += strspn(p, "0123456789");
	else
		return false;
	*real = (*p == '.');
	if (*real) {
		size_t digits = strspn(p + 1, "0123456789");
		if (!digits)
			return false;
		p += 1 + digits;
	}
	return *p == '\0';
}

/* A JSON string of s; bytes that are not valid UTF-8 (jansson refuses them)
 * become '?', so that the line keeps every key. */
static json_t *json_text(const char *s, size_t n)
{
	json_t *j = json_stringn(s, n);

	if (j)
		return j;
	char *copy = xstrndup(s, n);
	for (char *c = copy; *c; c++)
		if ((unsigned char)*c >= 0x80)
			*c = '?';
	j = json_stringn(copy, strlen(copy));
	free(copy);
	return j;
}

/* An unquoted value in number syntax is logged as a JSON number; a quoted
 * one, or one with leading zeros (a file mode, "0003"), stays a string. */
static json_t *json_value(const char *v)
{
	bool real;

	if (!is_json_number(v, &real))
		return json_text(v, strlen(v));
	if (!real && strlen(v) < 19)
		return json_integer(strtoll(v, NULL, 10));
	return json_real(strtod(v, NULL));
}

static bool is_reserved_key(const char *key)
{
	return !strcmp(key, "ts") || !strcmp(key, "level") || !strcmp(key, "pid") ||
	       !strcmp(key, "msg");
}

static void add_fields_json(json_t *obj, const char *p)
{
	char name[64], key[72], value[LOG_LINE_MAX];
	bool quoted;

	for (;;) {
		while (*p == ' ')
			p++;
		if (!is_field_start(p))
			break;
		const char *eq = strchr(p, '=');
		snprintf(name, sizeof(name), "%.*s", (int)(eq - p), p);
		/* A field never replaces the line's own keys: pid=… becomes field_pid. */
		snprintf(key, sizeof(key), "%s%s", is_reserved_key(name) ? "field_" : "", name);
		p = parse_value(eq + 1, value, sizeof(value), &quoted);
		json_object_set_new(obj, key,
				    quoted ? json_text(value, strlen(value)) : json_value(value));
	}
}

/* The whole line, newline included, malloc'd: never cut, so always valid JSON. */
static char *render_json(const char *ts, enum log_level level, const char *text, int errnum,
			 size_t *len)
{
	const char *fields = find_fields(text);
	size_t msglen = (size_t)(fields - text);
	json_t *obj = json_object();

	while (msglen > 0 && text[msglen - 1] == ' ')
		msglen--;
	json_object_set_new(obj, "ts", json_string(ts));
	json_object_set_new(obj, "level", json_string(level_names[level]));
	json_object_set_new(obj, "pid", json_integer(getpid()));
	json_object_set_new(obj, "msg", json_text(text, msglen));
	add_fields_json(obj, fields);
	if (errnum)
		json_object_set_new(obj, "error", json_string(strerror(errnum)));
	/* 15 digits: ms=2.14 is logged as 2.14, not 2.1400000000000001. */
	char *s = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15));
	json_decref(obj);
	if (!s)
		return NULL;
	*len = strlen(s);
	char *line = xrealloc(s, *len + 2);
	line[(*len)++] = '\n';
	line[*len] = '\0';
	return line;
}

static int render_text(char *out, size_t outlen, const char *ts, enum log_level level,
		       const char *text, int errnum)
{
	if (errnum)
		return snprintf(out, outlen, "%s %s %s error=\"%s\" pid=%d\n", ts,
				level_names[level], text, strerror(errnum), (int)getpid());
	return snprintf(out, outlen, "%s %s %s pid=%d\n", ts, level_names[level], text,
			(int)getpid());
}

/* Text mode: a control character (a newline in a server message) must not
 * start what looks like a new log line. */
static void flatten(char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			*s = ' ';
}

static void write_line(const char *line, size_t n)
{
	/* A failed write to stderr has nowhere better to be reported. */
	if (write(STDERR_FILENO, line, n) < 0) {
	}
}

void log_write(enum log_level level, int errnum, const char *fmt, ...)
{
	char text[LOG_LINE_MAX], line[LOG_LINE_MAX + 256], ts[CLOCK_RFC3339_LEN];
	int saved_errno = errno;
	va_list ap;

	if (level < min_level)
		return;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	clock_rfc3339(clock_real_ms(), ts, sizeof(ts));
	if (format == LOG_FORMAT_JSON) {
		size_t len;
		char *s = render_json(ts, level, text, errnum, &len);
		if (s)
			write_line(s, len);
		free(s);
	} else {
		flatten(text);
		/* text is under LOG_LINE_MAX, the rest of the line under 256. */
		int n = render_text(line, sizeof(line), ts, level, text, errnum);
		if (n > 0)
			write_line(line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
	}
	errno = saved_errno;
}
