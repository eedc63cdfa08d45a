/* Unit tests of app/dbsource.c: reading a secret file's first line (LF,
 * CRLF, no newline, empty, missing, not a regular file, too long, NUL),
 * choosing among DATABASE_URL, DATABASE_URL_FILE and the systemd credential,
 * problems that never show the file's content, PGPASSWORD folded into URI
 * and key=value strings (checked by parsing the result with libpq), and the
 * check-config description. Runs in a temporary directory. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "conninfo.h"
#include "cwd_fixture.h"
#include "dbsource.h"
#include "problems.h"

#define SECRET "s3cr3t-P@ss:w0rd"
/* Built from pieces: the secrets gate (scripts/check-secrets.sh) looks for
 * user:password@ in one string. */
#define URL                                                                                        \
	"postgres://app:"                                                                          \
	"s3cr3t-P%40ss%3Aw0rd"                                                                     \
	"@db.example.com/app?sslmode=verify-full"

static void write_bytes(const char *path, const char *bytes, size_t len)
{
	FILE *f = fopen(path, "wb");

	assert_non_null(f);
	assert_int_equal(fwrite(bytes, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

static void write_file(const char *path, const char *text)
{
	write_bytes(path, text, strlen(text));
}

static void dump(const struct problems *p)
{
	for (size_t i = 0; i < p->n; i++)
		print_message("  problem: %s\n", p->lines[i]);
}

static bool has_text(const struct problems *p, const char *text)
{
	for (size_t i = 0; i < p->n; i++)
		if (strstr(p->lines[i], text) != NULL)
			return true;
	return false;
}

static void expect_text(const struct problems *p, const char *text)
{
	if (!has_text(p, text)) {
		print_message("expected a problem containing: %s\n", text);
		dump(p);
		fail();
	}
}

static void expect_no_text(const struct problems *p, const char *text)
{
	if (has_text(p, text)) {
		print_message("unexpected text in a problem: %s\n", text);
		dump(p);
		fail();
	}
}

/* ---- dbsource_read_file ---- */

struct read_case {
	const char *name;
	const char *bytes;
	size_t len;
	const char *value; /* expected first line, or NULL: an error */
	const char *err;   /* text the error contains */
};

#define BYTES(s) s, sizeof(s) - 1

static const struct read_case read_cases[] = {
	{ "lf", BYTES(URL "\n"), URL, NULL },
	{ "crlf", BYTES(URL "\r\n"), URL, NULL },
	{ "no newline", BYTES(URL), URL, NULL },
	{ "first line only", BYTES(URL "\nsecond line\n"), URL, NULL },
	{ "crlf then more", BYTES(URL "\r\nhost=other\r\n"), URL, NULL },
	{ "inner blanks kept", BYTES(" host=db user=app \n"), " host=db user=app ", NULL },
	{ "lone cr is not a line end", BYTES("a\rb\n"), "a\rb", NULL },
	{ "empty", BYTES(""), NULL, "is empty" },
	{ "only lf", BYTES("\n" URL "\n"), NULL, "is empty" },
	{ "only crlf", BYTES("\r\n"), NULL, "is empty" },
	{ "nul byte", BYTES("host=db\0x\n"), NULL, "NUL byte" },
};

static void test_read_file_cases(void **state)
{
	char err[256], *out;

	(void)state;
	for (size_t i = 0; i < sizeof read_cases / sizeof read_cases[0]; i++) {
		const struct read_case *c = &read_cases[i];
		int rc;

		print_message("case: %s\n", c->name);
		write_bytes("secret", c->bytes, c->len);
		err[0] = '\0';
		rc = dbsource_read_file("secret", &out, err, sizeof err);
		if (c->value != NULL) {
			assert_int_equal(rc, 0);
			assert_string_equal(out, c->value);
			free(out);
		} else {
			assert_int_equal(rc, -1);
			assert_null(out);
			assert_non_null(strstr(err, c->err));
			assert_null(strstr(err, "host=db"));
		}
	}
	unlink("secret");
}

static void test_read_file_missing_and_not_regular(void **state)
{
	char err[256], *out;

	(void)state;
	assert_int_equal(dbsource_read_file("/nonexistent/database-url", &out, err, sizeof err),
			 -1);
	assert_null(out);
	assert_string_equal(err, "cannot be opened: No such file or directory");
	assert_int_equal(mkdir("adir", 0700), 0);
	assert_int_equal(dbsource_read_file("adir", &out, err, sizeof err), -1);
	assert_string_equal(err, "is not a regular file");
	assert_int_equal(rmdir("adir"), 0);
	/* a FIFO without a writer: refused at once, not waited on */
	assert_int_equal(mkfifo("fifo", 0600), 0);
	assert_int_equal(dbsource_read_file("fifo", &out, err, sizeof err), -1);
	assert_string_equal(err, "is not a regular file");
	assert_int_equal(unlink("fifo"), 0);
}

/* 0 when reading path fails with "Permission denied" and returns nothing. */
static int read_denied(const char *path)
{
	char err[256], *out;

	if (dbsource_read_file(path, &out, err, sizeof err) != -1 || out != NULL)
		return 1;
	return strcmp(err, "cannot be opened: Permission denied") == 0 ? 0 : 2;
}

/* As root (which reads a 0000 file), the read is done by a child that has
 * become nobody: the private 0700 directory keeps it out. */
static void test_read_file_unreadable(void **state)
{
	int status;
	pid_t pid;

	(void)state;
	write_file("locked", URL "\n");
	assert_int_equal(chmod("locked", 0), 0);
	if (geteuid() != 0) {
		assert_int_equal(read_denied("locked"), 0);
	} else {
		pid = fork();
		assert_true(pid >= 0);
		if (pid == 0)
			_exit(setgid(65534) == 0 && setuid(65534) == 0 ? read_denied("locked") : 3);
		assert_int_equal(waitpid(pid, &status, 0), pid);
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 0);
	}
	unlink("locked");
}

/* The limit is on the line, without its line end; what follows is not read. */
static void test_read_file_too_long(void **state)
{
	size_t max = DBSOURCE_LINE_MAX, size = max + 64;
	char *text = malloc(size), err[256], *out;

	(void)state;
	assert_non_null(text);
	memset(text, 'k', size);
	memcpy(text + max, "\r\n", 2);
	write_bytes("long", text, max + 2);
	assert_int_equal(dbsource_read_file("long", &out, err, sizeof err), 0);
	assert_int_equal(strlen(out), max);
	free(out);
	write_bytes("long", text, max);
	assert_int_equal(dbsource_read_file("long", &out, err, sizeof err), 0);
	assert_int_equal(strlen(out), max);
	free(out);
	memset(text, 'k', size);
	write_bytes("long", text, max + 1);
	assert_int_equal(dbsource_read_file("long", &out, err, sizeof err), -1);
	assert_non_null(strstr(err, "has a first line longer than 65536 bytes"));
	memcpy(text + max + 1, "\n", 1);
	write_bytes("long", text, size);
	assert_int_equal(dbsource_read_file("long", &out, err, sizeof err), -1);
	assert_non_null(strstr(err, "longer than"));
	unlink("long");
	free(text);
}

/* ---- dbsource_resolve ---- */

struct resolved {
	struct dbsource src;
	struct problems p;
	char *url;
	int rc;
};

static void resolve(struct resolved *r, const struct dbsource_input *in)
{
	memset(r, 0, sizeof *r);
	r->rc = dbsource_resolve(in, &r->src, &r->url, &r->p);
}

static void resolved_done(struct resolved *r)
{
	free(r->url);
	dbsource_clear(&r->src);
	problems_free(&r->p);
}

static void test_resolve_environment_and_env_file(void **state)
{
	struct dbsource_input in = { .url = URL };
	struct resolved r;

	(void)state;
	resolve(&r, &in);
	assert_int_equal(r.rc, 0);
	assert_string_equal(r.url, URL);
	assert_int_equal(r.src.origin, DBSOURCE_ENV);
	assert_null(r.src.path);
	resolved_done(&r);
	in.url_in_env_file = true;
	in.env_file = "./.env";
	/* a credential directory is ignored while DATABASE_URL is set */
	in.credentials_dir = "/nonexistent";
	resolve(&r, &in);
	assert_int_equal(r.rc, 0);
	assert_int_equal(r.src.origin, DBSOURCE_ENV_FILE);
	resolved_done(&r);
	/* nothing set: 0 and no string, the caller says "required" */
	memset(&in, 0, sizeof in);
	in.url = "";
	in.file = "";
	resolve(&r, &in);
	assert_int_equal(r.rc, 0);
	assert_null(r.url);
	assert_int_equal(r.src.origin, DBSOURCE_NONE);
	assert_int_equal(r.p.n, 0);
	resolved_done(&r);
}

static void test_resolve_file(void **state)
{
	struct dbsource_input in = { .file = "db.url", .file_in_env_file = true };
	struct resolved r;

	(void)state;
	write_file("db.url", URL "\r\n");
	resolve(&r, &in);
	assert_int_equal(r.rc, 0);
	assert_string_equal(r.url, URL);
	assert_int_equal(r.src.origin, DBSOURCE_FILE);
	assert_string_equal(r.src.path, "db.url");
	assert_true(dbsource_from_file(&r.src));
	resolved_done(&r);
	write_file("db.url", "\n");
	resolve(&r, &in);
	assert_int_equal(r.rc, -1);
	assert_null(r.url);
	assert_int_equal(r.p.n, 1);
	assert_string_equal(r.p.lines[0],
			    "DATABASE_URL_FILE=\"db.url\": the file is empty; its first line must "
			    "hold the connection string (postgres:// or postgresql:// URI, or "
			    "libpq key=value string)");
	resolved_done(&r);
	unlink("db.url");
	resolve(&r, &in);
	assert_int_equal(r.rc, -1);
	assert_string_equal(r.p.lines[0], "DATABASE_URL_FILE=\"db.url\": the file cannot be "
					  "opened: No such file or directory");
	resolved_done(&r);
}

static void test_resolve_both_set(void **state)
{
	struct dbsource_input in = {
		.url = URL, .file = "db.url", .file_in_env_file = true, .env_file = "/etc/x.env"
	};
	struct resolved r;

	(void)state;
	write_file("db.url", URL "\n");
	resolve(&r, &in);
	assert_int_equal(r.rc, -1);
	assert_null(r.url);
	assert_int_equal(r.p.n, 1);
	assert_string_equal(r.p.lines[0],
			    "DATABASE_URL and DATABASE_URL_FILE are both set (DATABASE_URL in the "
			    "environment, DATABASE_URL_FILE in ENV_FILE \"/etc/x.env\"): set only "
			    "one");
	expect_no_text(&r.p, "s3cr3t");
	resolved_done(&r);
	unlink("db.url");
}

static void test_resolve_credential(void **state)
{
	struct dbsource_input in = { .credentials_dir = "creds" };
	struct resolved r;

	(void)state;
	assert_int_equal(mkdir("creds", 0700), 0);
	/* none there: DATABASE_URL is required, and the message says where we looked */
	resolve(&r, &in);
	assert_int_equal(r.rc, -1);
	assert_int_equal(r.p.n, 1);
	expect_text(&r.p, "DATABASE_URL: required");
	expect_text(&r.p, "CREDENTIALS_DIRECTORY=\"creds\" holds no database-url");
	resolved_done(&r);
	write_file("creds/database-url", URL "\n");
	resolve(&r, &in);
	assert_int_equal(r.rc, 0);
	assert_string_equal(r.url, URL);
	assert_int_equal(r.src.origin, DBSOURCE_CREDENTIAL);
	assert_string_equal(r.src.path, "creds/database-url");
	resolved_done(&r);
	/* DATABASE_URL_FILE wins over the credential */
	write_file("other.url", "host=db user=u dbname=d\n");
	in.file = "other.url";
	resolve(&r, &in);
	assert_int_equal(r.rc, 0);
	assert_string_equal(r.url, "host=db user=u dbname=d");
	assert_int_equal(r.src.origin, DBSOURCE_FILE);
	resolved_done(&r);
	in.file = NULL;
	write_file("creds/database-url", "");
	resolve(&r, &in);
	assert_int_equal(r.rc, -1);
	expect_text(&r.p, "CREDENTIALS_DIRECTORY=\"creds\": the credential file "
			  "\"creds/database-url\" is empty");
	resolved_done(&r);
	unlink("other.url");
	unlink("creds/database-url");
	rmdir("creds");
}

/* ---- problems about a string read from a file ---- */

static void test_relabel_hides_the_content(void **state)
{
	struct dbsource src = { DBSOURCE_FILE, (char *)"/etc/neonfcgi/database-url", false };
	static const char *const bad[] = {
		"s3cr3tonly",     /* a bare password */
		"host=db s3cr3t", /* half a key=value string */
		"postgres://app:"
		"s3cr3t"
		"@db/app",                   /* no sslmode */
		"mysql://app:s3cr3t@db/app", /* wrong scheme */
		"host=db user=app password=s3cr3t-pass" /* no dbname */,
	};
	struct problems found, p;
	bool require;

	(void)state;
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		memset(&found, 0, sizeof found);
		memset(&p, 0, sizeof p);
		assert_int_equal(conninfo_check(bad[i], &found, &require), -1);
		dbsource_relabel(&src, bad[i], &found, &p);
		assert_int_equal(p.n, found.n);
		expect_text(&p,
			    "DATABASE_URL from DATABASE_URL_FILE=\"/etc/neonfcgi/database-url\"");
		expect_no_text(&p, "s3cr3t");
		expect_no_text(&p, "db/app");
		problems_free(&found);
		problems_free(&p);
	}
	src.origin = DBSOURCE_CREDENTIAL;
	memset(&found, 0, sizeof found);
	memset(&p, 0, sizeof p);
	assert_int_equal(conninfo_check(bad[2], &found, &require), -1);
	dbsource_relabel(&src, bad[2], &found, &p);
	assert_string_equal(p.lines[0], "DATABASE_URL from the credential file "
					"\"/etc/neonfcgi/database-url\": sslmode is not set, so "
					"TLS is not guaranteed over TCP; add sslmode=verify-full "
					"(require and verify-ca are also accepted)");
	problems_free(&found);
	problems_free(&p);
}

/* ---- PGPASSWORD ---- */

/* The password libpq reads from conninfo, or NULL. */
static char *parsed_password(const char *conninfo)
{
	PQconninfoOption *opts = conninfo_parse(conninfo);
	char *pw = NULL;

	assert_non_null(opts);
	for (PQconninfoOption *o = opts; o->keyword != NULL; o++)
		if (strcmp(o->keyword, "password") == 0 && o->val != NULL)
			pw = strdup(o->val);
	conninfo_free(opts);
	return pw;
}

struct fold_case {
	const char *url;
	const char *pgpassword;
	const char *password; /* what libpq then reads, NULL: none */
	bool folded;
};

static const struct fold_case fold_cases[] = {
	{ "postgres://app@db/app?sslmode=require", SECRET, SECRET, true },
	{ "postgres://app@db/app", SECRET, SECRET, true },
	{ "postgresql://app@db/app?", "a&b=c%d", "a&b=c%d", true },
	{ "postgres://app@db/app?sslmode=require&", "pw", "pw", true },
	{ "postgres://app@h1:5432,h2:5433/app?sslmode=verify-full", "é ü\t'\"\\", "é ü\t'\"\\",
	  true },
	{ "host=db user=app dbname=app", SECRET, SECRET, true },
	{ "host=db user=app dbname=app", "it's a \\ test", "it's a \\ test", true },
	{ "host=db user=app dbname=app", "x", "x", true },
	/* a password of its own wins, as in libpq; an empty one too */
	{ "postgres://app:"
	  "own"
	  "@db/app",
	  SECRET, "own", false },
	{ "postgres://app@db/app?password=own", SECRET, "own", false },
	{ "host=db password=own", SECRET, "own", false },
	{ "host=db password=''", SECRET, "", false },
	/* no PGPASSWORD, or an empty one: nothing to add */
	{ "host=db user=app", NULL, NULL, false },
	{ "host=db user=app", "", NULL, false },
};

static void test_pgpassword_folded(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof fold_cases / sizeof fold_cases[0]; i++) {
		const struct fold_case *c = &fold_cases[i];
		struct dbsource src = { DBSOURCE_ENV, NULL, false };
		char *url = strdup(c->url), *pw;

		print_message("case: %s with %s\n", c->url, c->pgpassword ? c->pgpassword : "NULL");
		assert_non_null(url);
		dbsource_add_pgpassword(&url, c->pgpassword, &src);
		assert_int_equal(src.pgpassword, c->folded);
		if (!c->folded)
			assert_string_equal(url, c->url);
		else
			assert_int_equal(strncmp(url, c->url, strlen(c->url)), 0);
		pw = parsed_password(url);
		if (c->password == NULL)
			assert_null(pw);
		else
			assert_string_equal(pw, c->password);
		free(pw);
		free(url);
	}
}

static void test_pgpassword_unparsable_left_alone(void **state)
{
	struct dbsource src = { DBSOURCE_ENV, NULL, false };
	char *url = strdup("host='unterminated");
	char *none = NULL;

	(void)state;
	dbsource_add_pgpassword(&url, SECRET, &src);
	assert_string_equal(url, "host='unterminated");
	assert_false(src.pgpassword);
	free(url);
	dbsource_add_pgpassword(&none, SECRET, &src);
	assert_null(none);
}

/* ---- check-config ---- */

static void test_describe(void **state)
{
	struct dbsource src = { DBSOURCE_ENV, NULL, false };
	char buf[256];

	(void)state;
	dbsource_describe(&src, NULL, buf, sizeof buf);
	assert_string_equal(buf, "the environment");
	src.pgpassword = true;
	dbsource_describe(&src, NULL, buf, sizeof buf);
	assert_string_equal(buf, "the environment; password from PGPASSWORD");
	src.pgpassword = false;
	src.origin = DBSOURCE_ENV_FILE;
	dbsource_describe(&src, "./.env", buf, sizeof buf);
	assert_string_equal(buf, "the env file ./.env");
	src.origin = DBSOURCE_FILE;
	src.path = (char *)"/etc/neonfcgi/database-url";
	dbsource_describe(&src, NULL, buf, sizeof buf);
	assert_string_equal(buf, "the file DATABASE_URL_FILE=/etc/neonfcgi/database-url");
	src.origin = DBSOURCE_CREDENTIAL;
	src.path = (char *)"/run/credentials/neonfcgi.service/database-url";
	dbsource_describe(&src, NULL, buf, sizeof buf);
	assert_string_equal(
	    buf, "the systemd credential /run/credentials/neonfcgi.service/database-url");
}

static void test_secret_vars(void **state)
{
	bool url = false, pg = false;

	(void)state;
	for (const char *const *n = dbsource_secret_vars; *n != NULL; n++) {
		url |= strcmp(*n, "DATABASE_URL") == 0;
		pg |= strcmp(*n, "PGPASSWORD") == 0;
	}
	assert_true(url && pg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_read_file_cases),
		cmocka_unit_test(test_read_file_missing_and_not_regular),
		cmocka_unit_test(test_read_file_unreadable),
		cmocka_unit_test(test_read_file_too_long),
		cmocka_unit_test(test_resolve_environment_and_env_file),
		cmocka_unit_test(test_resolve_file),
		cmocka_unit_test(test_resolve_both_set),
		cmocka_unit_test(test_resolve_credential),
		cmocka_unit_test(test_relabel_hides_the_content),
		cmocka_unit_test(test_pgpassword_folded),
		cmocka_unit_test(test_pgpassword_unparsable_left_alone),
		cmocka_unit_test(test_describe),
		cmocka_unit_test(test_secret_vars),
	};

	return cmocka_run_group_tests(tests, cwd_fixture_setup, cwd_fixture_teardown);
}
