/* libFuzzer target: the configuration validator (config_load) on an
 * environment and an env file built from the input, and the redaction of
 * DATABASE_URL.
 *
 * Input: one flag byte (bit 0: spawned on fd 0; bits 1-2: online CPUs), then
 * lines: "NAME=value" goes to the environment, "@text" to the env file.
 *
 * Oracle, besides ASan/UBSan/LSan: the password of every DATABASE_URL in the
 * input (as PQconninfoParse decodes it; checked when at least 4 bytes) must
 * not appear in any problem line, in config_print output, in
 * redact_conninfo output or in config_db_target output. A plain "is it in
 * the output" test would cry wolf when the password also happens to be the
 * user name, a default such as "1500", or a word of a message; so the check
 * is differential: the input is run a second time with the password's bytes
 * replaced by filler of the same length, and it is a leak only when the
 * password shows in the first output and not in the second. That needs the
 * password's raw bytes to occur exactly once in the input, on the
 * DATABASE_URL line; inputs where they do not (percent-encoded, repeated) are
 * still run for crashes. */
#include <arpa/inet.h>
#include <libpq-fe.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"
#include "envfile.h"
#include "redact.h"

#define MAX_ENV 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct run {
	char *env[MAX_ENV + 2];
	size_t nenv;
	char *file; /* env file text */
	size_t file_len;
	char *urls[4]; /* DATABASE_URL candidates (environment, file) */
	size_t nurls;
};

static char *dup_n(const char *s, size_t n)
{
	char *d = malloc(n + 1);

	if (d == NULL)
		abort();
	memcpy(d, s, n);
	d[n] = '\0';
	return d;
}

static int is_ip(const char *s)
{
	unsigned char buf[16];

	return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

/* Lines the target must not pass on: ENV_FILE is ours to set, files named
 * by DATABASE_URL_FILE or CREDENTIALS_DIRECTORY would make runs depend on
 * the machine's files, and a host name in API_HOST would make every run ask
 * the resolver. */
static int skip_line(const char *line, size_t n)
{
	if (n >= 9 && memcmp(line, "ENV_FILE=", 9) == 0)
		return 1;
	if (n >= 18 && memcmp(line, "DATABASE_URL_FILE=", 18) == 0)
		return 1;
	if (n >= 22 && memcmp(line, "CREDENTIALS_DIRECTORY=", 22) == 0)
		return 1;
	if (n >= 9 && memcmp(line, "API_HOST=", 9) == 0) {
		char *v = dup_n(line + 9, n - 9);
		int ip = is_ip(v);

		free(v);
		return !ip;
	}
	return 0;
}

static void add_env(struct run *r, const char *line, size_t n)
{
	if (r->nenv < MAX_ENV && memchr(line, '\0', n) == NULL && !skip_line(line, n)) {
		r->env[r->nenv] = dup_n(line, n);
		if (strncmp(r->env[r->nenv], "DATABASE_URL=", 13) == 0 && r->nurls == 0)
			r->urls[r->nurls++] = r->env[r->nenv] + 13; /* the first one wins */
		r->nenv++;
	}
}

static void split(struct run *r, const char *text, size_t len)
{
	size_t pos = 0;

	r->file = malloc(len + 1);
	if (r->file == NULL)
		abort();
	r->file_len = 0;
	while (pos < len) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t end = nl ? (size_t)(nl - text) : len;

		if (end > pos && text[pos] == '@') {
			memcpy(r->file + r->file_len, text + pos + 1, end - pos - 1);
			r->file_len += end - pos - 1;
			r->file[r->file_len++] = '\n';
		} else if (end > pos) {
			add_env(r, text + pos, end - pos);
		}
		pos = end + 1;
	}
}

/* The env file's DATABASE_URL, as the parser reads it (quotes removed). */
static void file_url(struct run *r)
{
	struct envfile ef;
	struct problems p = { NULL, 0 };
	const char *v;

	(void)envfile_parse(r->file, r->file_len, "fuzz", &ef, &p);
	v = envfile_get(&ef, "DATABASE_URL");
	if (v != NULL && r->nurls < 4)
		r->urls[r->nurls++] = dup_n(v, strlen(v)); /* freed in run_free */
	envfile_free(&ef);
	problems_free(&p);
}

static void run_free(struct run *r)
{
	for (size_t i = 0; i < r->nenv; i++)
		free(r->env[i]);
	/* urls[0] may point into env; file urls were duplicated */
	for (size_t i = 0; i < r->nurls; i++) {
		int in_env = 0;

		for (size_t j = 0; j < r->nenv; j++)
			if (r->urls[i] == r->env[j] + 13)
				in_env = 1;
		if (!in_env)
			free(r->urls[i]);
	}
	free(r->file);
}

static void emit_redacted(FILE *out, const char *url)
{
	static const size_t sizes[] = { 4096, 64, 17, 5, 1 };
	char buf[4096];

	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		redact_conninfo(url, buf, sizes[i]);
		if (strlen(buf) >= sizes[i])
			abort(); /* must always NUL-terminate within outlen */
		fprintf(out, "%s\n", buf);
	}
}

/* Everything an operator could see for this input, in one string. */
static char *observe(const uint8_t *data, size_t size)
{
	struct run r;
	struct config *cfg = config_new();
	struct problems p = { NULL, 0 };
	struct config_source src;
	char target[256], *text = NULL, path[64];
	size_t text_len = 0;
	FILE *out = open_memstream(&text, &text_len);
	int fd = -1;

	if (out == NULL || size == 0)
		abort();
	memset(&r, 0, sizeof r);
	split(&r, (const char *)data + 1, size - 1);
	file_url(&r);
	if (r.file_len > 0) {
		fd = memfd_create("fuzz.env", MFD_CLOEXEC);
		if (fd < 0 || write(fd, r.file, r.file_len) != (ssize_t)r.file_len)
			abort();
		snprintf(path, sizeof path, "ENV_FILE=/proc/self/fd/%d", fd);
	} else {
		snprintf(path, sizeof path, "ENV_FILE=");
	}
	r.env[r.nenv] = path;
	r.env[r.nenv + 1] = NULL;
	src.environ = r.env;
	src.spawned = data[0] & 1;
	src.online_cpus = (data[0] >> 1) & 3;
	if (config_load(cfg, &src, &p) == 0 && p.n != 0)
		abort();
	for (size_t i = 0; i < p.n; i++)
		fprintf(out, "%s\n", p.lines[i]);
	config_print(cfg, out);
	config_db_target(cfg, target, sizeof target);
	fprintf(out, "%s\n", target);
	for (size_t i = 0; i < r.nurls; i++)
		emit_redacted(out, r.urls[i]);
	config_destroy(cfg);
	problems_free(&p);
	if (fd >= 0)
		close(fd);
	run_free(&r);
	fclose(out);
	return text;
}

static char *password_of(const char *url)
{
	char *err = NULL, *pw = NULL;
	PQconninfoOption *opts = PQconninfoParse(url, &err);

	if (opts == NULL) {
		PQfreemem(err);
		return NULL;
	}
	for (PQconninfoOption *o = opts; o->keyword != NULL; o++)
		if (strcmp(o->keyword, "password") == 0 && o->val != NULL && strlen(o->val) >= 4)
			pw = strdup(o->val);
	PQconninfoFree(opts);
	return pw;
}

static const uint8_t *find_once(const uint8_t *hay, size_t n, const char *needle)
{
	size_t k = strlen(needle);
	const uint8_t *hit = NULL;

	for (size_t i = 0; k <= n && i <= n - k; i++) {
		if (memcmp(hay + i, needle, k) == 0) {
			if (hit != NULL)
				return NULL;
			hit = hay + i;
		}
	}
	return hit;
}

/* at lies on a line that sets DATABASE_URL, after the '=' (the password's
 * bytes as written, not an equal string elsewhere in the input). */
static int in_url_line(const uint8_t *data, const uint8_t *at)
{
	const uint8_t *line = at;

	while (line > data && line[-1] != '\n')
		line--;
	return memmem(line, (size_t)(at - line), "DATABASE_URL=", 13) != NULL;
}

static void check_password(const uint8_t *data, size_t size, const char *pw, const char *seen)
{
	const uint8_t *at = find_once(data, size, pw);
	size_t k = strlen(pw);
	char fill = strchr(pw, 'Z') ? 'Y' : 'Z';
	uint8_t *twin;
	char *twin_seen;

	if (at == NULL || !in_url_line(data, at) || strstr(seen, pw) == NULL)
		return; /* not checkable this way, or nothing shown */
	twin = malloc(size);
	if (twin == NULL)
		abort();
	memcpy(twin, data, size);
	memset(twin + (at - data), fill, k);
	twin_seen = observe(twin, size);
	if (strstr(twin_seen, pw) == NULL) {
		fprintf(stderr, "password \"%s\" leaked:\n%s\n", pw, seen);
		abort();
	}
	free(twin_seen);
	free(twin);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct run r;
	char *seen;

	if (size == 0 || size > 4096)
		return 0;
	seen = observe(data, size);
	memset(&r, 0, sizeof r);
	split(&r, (const char *)data + 1, size - 1);
	file_url(&r);
	for (size_t i = 0; i < r.nurls; i++) {
		char *pw = password_of(r.urls[i]);

		/* A percent-encoded password is not written as the bytes libpq
		 * decodes it to, so an equal string elsewhere in the input (a
		 * database name, say) would be taken for it and blanked in the
		 * twin run: a false alarm. Encoded passwords are covered by the
		 * redaction unit tests instead. */
		if (pw != NULL && strchr(r.urls[i], '%') == NULL)
			check_password(data, size, pw, seen);
		free(pw);
	}
	run_free(&r);
	free(seen);
	return 0;
}
