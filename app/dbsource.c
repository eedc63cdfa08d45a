/* dbsource: the sources of the connection string and their rules
 * (DESIGN.md §2). Files holding it are read whole-line, bounded, and their
 * bytes are wiped after use; a problem names the variable and the path,
 * never the content (not even redacted: a file may hold a bare password). */
#include "dbsource.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conninfo.h"
#include "problems.h"
#include "redact.h"
#include "xalloc.h"

const char *const dbsource_secret_vars[] = { "DATABASE_URL", "PGPASSWORD", NULL };

static bool is_set(const char *s)
{
	return s != NULL && *s != '\0';
}

/* ---- reading a file's first line ---- */

/* Up to cap bytes of fd, stopping early at a newline or end of file;
 * 0 or -1 with errno. */
static int read_head(int fd, char *buf, size_t cap, size_t *len)
{
	size_t n = 0;
	ssize_t r;

	while (n < cap) {
		r = read(fd, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0 || memchr(buf + n, '\n', (size_t)r) != NULL) {
			n += (size_t)r;
			break;
		}
		n += (size_t)r;
	}
	*len = n;
	return 0;
}

/* The first line's length in buf, "\r\n" or "\n" excluded, with its checks. */
static int first_line(const char *buf, size_t n, size_t *len, char *err, size_t errlen)
{
	const char *nl = memchr(buf, '\n', n);
	size_t l = nl ? (size_t)(nl - buf) : n;

	if (l > 0 && buf[l - 1] == '\r')
		l--;
	*len = l;
	if (l == 0)
		snprintf(err, errlen,
			 "is empty; its first line must hold the connection string "
			 "(" CONNINFO_FORMS ")");
	else if (l > DBSOURCE_LINE_MAX)
		snprintf(err, errlen, "has a first line longer than %d bytes", DBSOURCE_LINE_MAX);
	else if (memchr(buf, '\0', l) != NULL)
		snprintf(err, errlen, "has a NUL byte in its first line");
	else
		return 0;
	return -1;
}

int dbsource_read_file(const char *path, char **out, char *err, size_t errlen)
{
	/* A line of the maximum length still fits with its "\r\n". */
	size_t cap = DBSOURCE_LINE_MAX + 2, n = 0, len = 0;
	struct stat st;
	char *buf = NULL;
	int fd, rc = -1;

	*out = NULL;
	/* O_NONBLOCK: opening a FIFO must not wait for a writer. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		snprintf(err, errlen, "cannot be opened: %s", strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "is not a regular file");
		goto fail;
	}
	buf = xmalloc(cap);
	if (read_head(fd, buf, cap, &n) < 0) {
		snprintf(err, errlen, "cannot be read: %s", strerror(errno));
		goto fail;
	}
	if (first_line(buf, n, &len, err, errlen) < 0)
		goto fail;
	*out = xstrndup(buf, len);
	rc = 0;
fail:
	xfree_wiped_n(buf, cap);
	close(fd);
	return rc;
}

/* ---- choosing the source ---- */

static void origin_name(bool in_env_file, const char *env_file, char *buf, size_t len)
{
	char q[PROBLEMS_QUOTE_BUF];

	if (!in_env_file) {
		snprintf(buf, len, "the environment");
		return;
	}
	problems_quote(env_file ? env_file : "", q, sizeof q);
	snprintf(buf, len, "ENV_FILE \"%s\"", q);
}

static void report_both(const struct dbsource_input *in, struct problems *p)
{
	char a[PROBLEMS_QUOTE_BUF + 16], b[PROBLEMS_QUOTE_BUF + 16];

	origin_name(in->url_in_env_file, in->env_file, a, sizeof a);
	origin_name(in->file_in_env_file, in->env_file, b, sizeof b);
	problems_add(p,
		     "DATABASE_URL and DATABASE_URL_FILE are both set (DATABASE_URL in %s, "
		     "DATABASE_URL_FILE in %s): set only one",
		     a, b);
}

static int from_file(const struct dbsource_input *in, struct dbsource *src, char **url,
		     struct problems *p)
{
	char err[256], q[PROBLEMS_QUOTE_BUF];

	if (dbsource_read_file(in->file, url, err, sizeof err) < 0) {
		problems_quote(in->file, q, sizeof q);
		problems_add(p, "DATABASE_URL_FILE=\"%s\": the file %s", q, err);
		return -1;
	}
	src->origin = DBSOURCE_FILE;
	src->path = xstrdup(in->file);
	return 0;
}

/* systemd's LoadCredential=: a missing credential is no error here (the
 * caller says DATABASE_URL is required), an unusable one is. */
static int from_credential(const struct dbsource_input *in, struct dbsource *src, char **url,
			   struct problems *p)
{
	char err[256], q[PROBLEMS_QUOTE_BUF], qp[PROBLEMS_QUOTE_BUF];
	size_t n = strlen(in->credentials_dir) + sizeof "/" DBSOURCE_CREDENTIAL_NAME;
	char *path = xmalloc(n);
	struct stat st;

	snprintf(path, n, "%s/%s", in->credentials_dir, DBSOURCE_CREDENTIAL_NAME);
	problems_quote(in->credentials_dir, q, sizeof q);
	problems_quote(path, qp, sizeof qp);
	if (stat(path, &st) < 0 && errno == ENOENT) {
		problems_add(p,
			     "DATABASE_URL: required (" CONNINFO_FORMS "), or DATABASE_URL_FILE, "
			     "or a credential " DBSOURCE_CREDENTIAL_NAME
			     "; CREDENTIALS_DIRECTORY=\"%s\" holds no " DBSOURCE_CREDENTIAL_NAME,
			     q);
	} else if (dbsource_read_file(path, url, err, sizeof err) < 0) {
		problems_add(p, "CREDENTIALS_DIRECTORY=\"%s\": the credential file \"%s\" %s", q,
			     qp, err);
	} else {
		src->origin = DBSOURCE_CREDENTIAL;
		src->path = path;
		return 0;
	}
	free(path);
	return -1;
}

int dbsource_resolve(const struct dbsource_input *in, struct dbsource *src, char **url,
		     struct problems *p)
{
	memset(src, 0, sizeof *src);
	*url = NULL;
	if (is_set(in->url) && is_set(in->file)) {
		report_both(in, p);
		return -1;
	}
	if (is_set(in->file))
		return from_file(in, src, url, p);
	if (is_set(in->url)) {
		src->origin = in->url_in_env_file ? DBSOURCE_ENV_FILE : DBSOURCE_ENV;
		*url = xstrdup(in->url);
		return 0;
	}
	if (is_set(in->credentials_dir))
		return from_credential(in, src, url, p);
	return 0;
}

void dbsource_clear(struct dbsource *src)
{
	free(src->path);
	memset(src, 0, sizeof *src);
}

bool dbsource_from_file(const struct dbsource *src)
{
	return src->origin == DBSOURCE_FILE || src->origin == DBSOURCE_CREDENTIAL;
}

/* ---- problems about a connection string read from a file ---- */

static void file_label(const struct dbsource *src, char *buf, size_t len)
{
	char q[PROBLEMS_QUOTE_BUF];

	problems_quote(src->path ? src->path : "", q, sizeof q);
	if (src->origin == DBSOURCE_CREDENTIAL)
		snprintf(buf, len, "DATABASE_URL from the credential file \"%s\"", q);
	else
		snprintf(buf, len, "DATABASE_URL from DATABASE_URL_FILE=\"%s\"", q);
}

void dbsource_relabel(const struct dbsource *src, const char *url, const struct problems *found,
		      struct problems *p)
{
	char shown[PROBLEMS_QUOTE_BUF], prefix[PROBLEMS_QUOTE_BUF + 32];
	char label[PROBLEMS_QUOTE_BUF + 64];
	size_t plen;

	conninfo_quote(url, shown, sizeof shown);
	plen = (size_t)snprintf(prefix, sizeof prefix, "DATABASE_URL=\"%s\"", shown);
	file_label(src, label, sizeof label);
	for (size_t i = 0; i < found->n; i++) {
		const char *line = found->lines[i];

		if (strncmp(line, prefix, plen) == 0)
			problems_add(p, "%s%s", label, line + plen);
		else if (shown[0] != '\0' && strstr(line, shown) != NULL)
			problems_add(p, "%s: not a valid connection string (" CONNINFO_FORMS ")",
				     label);
		else
			problems_add(p, "%s", line);
	}
}

/* ---- PGPASSWORD ---- */

/* Whether libpq would find a password in conninfo: a password option that
 * is present, even empty (libpq then does not look at PGPASSWORD). An
 * unparsable string counts as having one: nothing is added to it. */
static bool names_password(const char *conninfo)
{
	PQconninfoOption *opts = conninfo_parse(conninfo);
	bool found = opts == NULL;

	for (PQconninfoOption *o = opts; o != NULL && o->keyword != NULL; o++)
		if (strcmp(o->keyword, "password") == 0 && o->val != NULL)
			found = true;
	conninfo_free(opts);
	return found;
}

static bool unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '.' || c == '_' || c == '~';
}

/* url + "?password=" or "&password=" + the password percent-encoded. */
static char *uri_with_password(const char *url, const char *pw)
{
	size_t ul = strlen(url), o = ul, size = ul + sizeof "&password=" + strlen(pw) * 3;
	char last = ul ? url[ul - 1] : '\0';
	const char *sep = last == '?' || last == '&' ? "" : strchr(url, '?') ? "&" : "?";
	char *out = xmalloc(size);

	memcpy(out, url, ul);
	o += (size_t)snprintf(out + o, size - o, "%spassword=", sep);
	for (const unsigned char *s = (const unsigned char *)pw; *s != '\0'; s++) {
		if (unreserved(*s))
			out[o++] = (char)*s;
		else
			o += (size_t)snprintf(out + o, size - o, "%%%02X", *s);
	}
	out[o] = '\0';
	return out;
}

/* url + " password='...'" with ' and \ escaped as libpq reads them. */
static char *kv_with_password(const char *url, const char *pw)
{
	size_t ul = strlen(url), o = ul, size = ul + sizeof " password=''" + strlen(pw) * 2;
	char *out = xmalloc(size);

	memcpy(out, url, ul);
	memcpy(out + o, " password='", 11);
	o += 11;
	for (const char *s = pw; *s != '\0'; s++) {
		if (*s == '\'' || *s == '\\')
			out[o++] = '\\';
		out[o++] = *s;
	}
	out[o++] = '\'';
	out[o] = '\0';
	return out;
}

void dbsource_add_pgpassword(char **url, const char *pgpassword, struct dbsource *src)
{
	char *with;

	if (*url == NULL || !is_set(pgpassword) || names_password(*url))
		return;
	if (redact_uri_prefix_len(*url, strlen(*url)) > 0)
		with = uri_with_password(*url, pgpassword);
	else
		with = kv_with_password(*url, pgpassword);
	xfree_wiped(*url);
	*url = with;
	src->pgpassword = true;
}

/* ---- check-config ---- */

void dbsource_describe(const struct dbsource *src, const char *env_file, char *buf, size_t len)
{
	const char *path = src->path ? src->path : "";
	const char *pw = src->pgpassword ? "; password from PGPASSWORD" : "";

	switch (src->origin) {
	case DBSOURCE_ENV: snprintf(buf, len, "the environment%s", pw); break;
	case DBSOURCE_ENV_FILE:
		snprintf(buf, len, "the env file %s%s", env_file ? env_file : "", pw);
		break;
	case DBSOURCE_FILE: snprintf(buf, len, "the file DATABASE_URL_FILE=%s%s", path, pw); break;
	case DBSOURCE_CREDENTIAL:
		snprintf(buf, len, "the systemd credential %s%s", path, pw);
		break;
	case DBSOURCE_NONE: snprintf(buf, len, "nowhere"); break;
	}
}
