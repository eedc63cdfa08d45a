/* log: one line per event on stderr, written with a single write(2) so lines
 * from the master and its workers never interleave mid-line. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "log.h"

#define LOG_LINE_MAX 4096

static enum log_level min_level = LOG_LEVEL_INFO;
static enum log_format format = LOG_FORMAT_TEXT;

static const char *const level_names[] = { "debug", "info", "warn", "error" };

void log_init(enum log_level level, enum log_format fmt)
{
	min_level = level;
	format = fmt;
}

bool log_enabled(enum log_level level)
{
	return level >= min_level;
}

static void format_ts(char *buf, size_t len)
{
	struct timeval tv;
	struct tm tm;

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	size_t n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, len - n, ".%03ldZ", (long)(tv.tv_usec / 1000));
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

/* Split "free text key=value key=\"quoted value\"" into msg and fields. */
static const char *find_fields(const char *text)
{
	const char *p = text;

	while (*p) {
		if ((p == text || p[-1] == ' ') && is_field_start(p))
			return p;
		p++;
	}
	return p;
}

/* Parse one value at p (quoted with \" escapes, or up to a space) into out. */
static const char *parse_value(const char *p, char *out, size_t outlen)
{
	size_t n = 0;
	bool quoted = (*p == '"');

	if (quoted)
		p++;
	while (*p && (quoted ? *p != '"' : *p != ' ')) {
		if (quoted && *p == '\\' && p[1])
			p++;
		if (n + 1 < outlen)
			out[n++] = *p;
		p++;
	}
	out[n] = '\0';
	if (quoted && *p == '"')
		p++;
	return p;
}

/* A field value that is a plain number is logged as a JSON number. */
static json_t *json_value(const char *v)
{
	char *end;

	if (*v && strspn(v, "-0123456789") == strlen(v) && strlen(v) < 19) {
		long long n = strtoll(v, &end, 10);
		if (*end == '\0')
			return json_integer(n);
	}
	if (*v && strspn(v, "-0123456789.") == strlen(v)) {
		double d = strtod(v, &end);
		if (*end == '\0')
			return json_real(d);
	}
	return json_string(v);
}

static bool is_reserved_key(const char *key)
{
	return !strcmp(key, "ts") || !strcmp(key, "level") || !strcmp(key, "pid") ||
	       !strcmp(key, "msg");
}

static void add_fields_json(json_t *obj, const char *p)
{
	char key[64], value[LOG_LINE_MAX];

	while (*p) {
		while (*p == ' ')
			p++;
		const char *eq = strchr(p, '=');
		if (!*p || !eq || (size_t)(eq - p) >= sizeof(key))
			break;
		memcpy(key, p, (size_t)(eq - p));
		key[eq - p] = '\0';
		p = parse_value(eq + 1, value, sizeof(value));
		/* The line's own keys are never overwritten by a field. */
		if (!is_reserved_key(key))
			json_object_set_new(obj, key, json_value(value));
	}
}

static int render_json(char *out, size_t outlen, const char *ts, enum log_level level,
		       const char *text, int errnum)
{
	const char *fields = find_fields(text);
	size_t msglen = (size_t)(fields - text);
	json_t *obj = json_object();

	while (msglen > 0 && text[msglen - 1] == ' ')
		msglen--;
	json_object_set_new(obj, "ts", json_string(ts));
	json_object_set_new(obj, "level", json_string(level_names[level]));
	json_object_set_new(obj, "pid", json_integer(getpid()));
	json_object_set_new(obj, "msg", json_stringn(text, msglen));
	add_fields_json(obj, fields);
	if (errnum)
		json_object_set_new(obj, "error", json_string(strerror(errnum)));
	char *s = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(obj);
	int n = snprintf(out, outlen, "%s\n", s ? s : "{}");
	free(s);
	return n;
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

void log_write(enum log_level level, int errnum, const char *fmt, ...)
{
	char text[LOG_LINE_MAX], line[LOG_LINE_MAX + 256], ts[40];
	int saved_errno = errno;
	va_list ap;

	if (level < min_level)
		return;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	format_ts(ts, sizeof(ts));
	int n = format == LOG_FORMAT_JSON
		    ? render_json(line, sizeof(line), ts, level, text, errnum)
		    : render_text(line, sizeof(line), ts, level, text, errnum);
	if (n < 0)
		goto out;
	if ((size_t)n >= sizeof(line)) {
		n = sizeof(line) - 1;
		line[n - 1] = '\n';
	}
	/* A failed write to stderr has nowhere better to be reported. */
	if (write(STDERR_FILENO, line, (size_t)n) < 0) {
	}
out:
	errno = saved_errno;
}
