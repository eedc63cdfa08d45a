/* migplan: migration files and plans, no database. A file's version comes
 * from its name, its identity from the SHA-256 of its bytes; the plan merges
 * the files with the rows the database recorded, one step per version. */
#include "migplan.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "problems.h"
#include "migsplit.h"
#include "xalloc.h"

/* A migration is SQL text written by hand or by a tool; anything larger is
 * almost certainly a mistake (a dump), and it is read into memory. */
#define MAX_FILE_BYTES (64L * 1024 * 1024)

/* ---- names, checksums, the no-transaction marker ---- */

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* Lower case only: on a case-insensitive checkout (macOS, Windows) two names
 * differing in case would be one file, and the recorded name is compared
 * exactly. */
static bool is_name_char(char c)
{
	return (c >= 'a' && c <= 'z') || is_digit(c) || c == '_';
}

static bool parse_name(const char *fname, int *version)
{
	size_t n = strlen(fname);
	int v = 0;

	if (n < 4 + 1 + 1 + 4 || fname[4] != '_' || strcmp(fname + n - 4, ".sql") != 0)
		return false;
	for (size_t i = 0; i < 4; i++) {
		if (!is_digit(fname[i]))
			return false;
		v = v * 10 + (fname[i] - '0');
	}
	for (size_t i = 5; i < n - 4; i++)
		if (!is_name_char(fname[i]))
			return false;
	if (v == 0)
		return false;
	*version = v;
	return true;
}

static void sha256_hex(const void *data, size_t len, char out[MIGPLAN_SHA256_HEX])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	if (!EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) || mdlen != 32)
		abort(); /* fails only without memory */
	for (unsigned int i = 0; i < mdlen; i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 0xf];
	}
	out[64] = '\0';
}

static bool has_no_tx_marker(const char *sql, size_t len)
{
	size_t m = strlen(MIGPLAN_NO_TX_MARKER);

	if (len < m || memcmp(sql, MIGPLAN_NO_TX_MARKER, m) != 0)
		return false;
	/* Only blanks may follow on that line (a CRLF checkout included). */
	for (size_t i = m; i < len && sql[i] != '\n'; i++)
		if (sql[i] != ' ' && sql[i] != '\t' && sql[i] != '\r')
			return false;
	return true;
}

/* ---- the directory's files ---- */

static void report_bad_name(struct problems *p, const char *fname)
{
	problems_add(p,
		     "%s: not a migration file name: expected NNNN_name.sql (four digits "
		     "0001-9999, '_', lower-case letters, digits or '_', then .sql)",
		     fname);
}

int migplan_files_add(struct migplan_files *fs, const char *fname, const char *data, size_t len,
		      struct problems *p)
{
	int version;

	if (!parse_name(fname, &version)) {
		report_bad_name(p, fname);
		return -1;
	}
	if (memchr(data, '\0', len)) {
		problems_add(p, "%s: contains a NUL byte; not a SQL text file", fname);
		return -1;
	}
	fs->v = xrealloc(fs->v, (fs->n + 1) * sizeof(*fs->v));
	struct migplan_file *f = &fs->v[fs->n++];
	f->version = version;
	f->name = xstrdup(fname);
	f->sql = xstrndup(data, len);
	f->len = len;
	sha256_hex(data, len, f->checksum);
	f->no_transaction = has_no_tx_marker(data, len);
	return 0;
}

static int check_tx_control(const struct migplan_file *f, struct problems *p)
{
	struct migsplit_stmt *st = NULL;
	size_t n = migsplit_sql(f->sql, &st);
	int rc = 0;

	for (size_t i = 0; i < n && rc == 0; i++) {
		if (!migsplit_is_tx_control(&st[i]))
			continue;
		problems_add(p,
			     "%s line %d: \"%s\" is not allowed: each migration runs in its own "
			     "transaction (a file whose first line is \"%s\" runs without one)",
			     f->name, st[i].line, st[i].keyword, MIGPLAN_NO_TX_MARKER);
		rc = -1;
	}
	free(st);
	return rc;
}

static int cmp_file(const void *a, const void *b)
{
	const struct migplan_file *x = a, *y = b;

	if (x->version != y->version)
		return x->version < y->version ? -1 : 1;
	return strcmp(x->name, y->name);
}

static void report_gap(struct problems *p, const struct migplan_file *f, int want)
{
	if (f->version - want == 1)
		problems_add(p,
			     "%s: version %04d is missing before it (versions run 0001, "
			     "0002, ... without gaps)",
			     f->name, want);
	else
		problems_add(p,
			     "%s: versions %04d-%04d are missing before it (versions run "
			     "0001, 0002, ... without gaps)",
			     f->name, want, f->version - 1);
}

int migplan_files_check(struct migplan_files *fs, struct problems *p)
{
	int rc = 0, want = 1;

	if (fs->n > 1) /* qsort of an empty (NULL) array is undefined */
		qsort(fs->v, fs->n, sizeof(*fs->v), cmp_file);
	for (size_t i = 0; i < fs->n; i++) {
		const struct migplan_file *f = &fs->v[i];
		if (i > 0 && f->version == fs->v[i - 1].version) {
			problems_add(p, "%s and %s: duplicate version %04d", fs->v[i - 1].name,
				     f->name, f->version);
			rc = -1;
			continue;
		}
		if (f->version != want) {
			report_gap(p, f, want);
			rc = -1;
		}
		want = f->version + 1;
		if (!f->no_transaction && check_tx_control(f, p) < 0)
			rc = -1;
	}
	return rc;
}

static ssize_t read_all(int fd, char *buf, size_t len)
{
	size_t got = 0;

	while (got < len) {
		ssize_t r = read(fd, buf + got, len - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0)
			break;
		got += (size_t)r;
	}
	return (ssize_t)got;
}

static int read_entry(int dfd, const char *name, struct migplan_files *fs, struct problems *p)
{
	int version, rc = -1;
	char *buf = NULL;
	struct stat st;

	if (!parse_name(name, &version)) {
		report_bad_name(p, name);
		return -1;
	}
	int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0 || fstat(fd, &st) < 0) {
		problems_add(p, "%s: cannot read: %s", name, strerror(errno));
		goto fail;
	}
	if (!S_ISREG(st.st_mode) || st.st_size > MAX_FILE_BYTES) {
		problems_add(p, "%s: %s", name,
			     S_ISREG(st.st_mode) ? "larger than 64 MiB" : "not a regular file");
		goto fail;
	}
	buf = xcalloc((size_t)st.st_size + 1, 1);
	ssize_t got = read_all(fd, buf, (size_t)st.st_size);
	if (got < 0)
		problems_add(p, "%s: cannot read: %s", name, strerror(errno));
	else
		rc = migplan_files_add(fs, name, buf, (size_t)got, p);
fail:
	free(buf);
	if (fd >= 0)
		close(fd);
	return rc;
}

int migplan_scan_dir(const char *dir, struct migplan_files *fs, struct problems *p)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int rc = 0;

	if (!d) {
		problems_add(p, "MIGRATIONS_DIR=\"%s\": cannot open: %s", dir, strerror(errno));
		return -1;
	}
	/* Dot files are editors' and git's (.gitkeep, .0002_x.sql.swp); every
	 * other entry must be a migration, so a misnamed one is not skipped. */
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.' && read_entry(dirfd(d), de->d_name, fs, p) < 0)
			rc = -1;
	closedir(d);
	if (migplan_files_check(fs, p) < 0)
		rc = -1;
	return rc;
}

void migplan_files_free(struct migplan_files *fs)
{
	for (size_t i = 0; i < fs->n; i++) {
		free(fs->v[i].name);
		free(fs->v[i].sql);
	}
	free(fs->v);
	fs->v = NULL;
	fs->n = 0;
}

void migplan_applied_add(struct migplan_applied_list *al, int version, const char *name,
			 const char *checksum, const char *applied_at)
{
	al->v = xrealloc(al->v, (al->n + 1) * sizeof(*al->v));
	struct migplan_applied *a = &al->v[al->n++];
	a->version = version;
	snprintf(a->name, sizeof(a->name), "%s", name);
	snprintf(a->checksum, sizeof(a->checksum), "%s", checksum);
	snprintf(a->applied_at, sizeof(a->applied_at), "%s", applied_at);
}

void migplan_applied_free(struct migplan_applied_list *al)
{
	free(al->v);
	al->v = NULL;
	al->n = 0;
}

/* ---- plans ---- */

static enum migplan_state compare(const struct migplan_file *f, const struct migplan_applied *a)
{
	if (strcmp(f->checksum, a->checksum) != 0)
		return MIGPLAN_CHANGED;
	if (strcmp(f->name, a->name) != 0)
		return MIGPLAN_RENAMED;
	return MIGPLAN_APPLIED;
}

static void add_step(struct migplan *plan, int version, enum migplan_state state,
		     const struct migplan_file *f, const struct migplan_applied *a)
{
	struct migplan_step *s = &plan->v[plan->n++];

	s->version = version;
	s->state = state;
	s->file = f;
	s->applied = a;
}

void migplan_build(const struct migplan_files *fs, const struct migplan_applied_list *al,
		   struct migplan *plan)
{
	int last_applied = 0;
	size_t i = 0, j = 0;

	for (size_t k = 0; k < al->n; k++)
		if (al->v[k].version > last_applied)
			last_applied = al->v[k].version;
	plan->v = xcalloc(fs->n + al->n, sizeof(*plan->v));
	plan->n = 0;
	while (i < fs->n || j < al->n) {
		bool file = i < fs->n, row = j < al->n;
		if (row && (!file || al->v[j].version < fs->v[i].version)) {
			add_step(plan, al->v[j].version, MIGPLAN_MISSING, NULL, &al->v[j]);
			j++;
		} else if (!row || fs->v[i].version < al->v[j].version) {
			const struct migplan_file *f = &fs->v[i++];
			add_step(plan, f->version,
				 f->version < last_applied ? MIGPLAN_OUT_OF_ORDER : MIGPLAN_PENDING,
				 f, NULL);
		} else {
			add_step(plan, fs->v[i].version, compare(&fs->v[i], &al->v[j]), &fs->v[i],
				 &al->v[j]);
			i++;
			j++;
		}
	}
}

size_t migplan_count(const struct migplan *plan, enum migplan_state state)
{
	size_t n = 0;

	for (size_t i = 0; i < plan->n; i++)
		n += plan->v[i].state == state;
	return n;
}

static bool refuse_step(const struct migplan_step *s, struct problems *p)
{
	switch (s->state) {
	case MIGPLAN_CHANGED:
		problems_add(p,
			     "%s: changed after it was applied (recorded checksum %.12s..., file "
			     "%.12s...); restore it and put the change in a new migration",
			     s->file->name, s->applied->checksum, s->file->checksum);
		return true;
	case MIGPLAN_RENAMED:
		problems_add(p, "%s: version %04d was applied as %s; restore that name",
			     s->file->name, s->version, s->applied->name);
		return true;
	case MIGPLAN_OUT_OF_ORDER:
		problems_add(p,
			     "%s: not applied, but a later version is; renumber it after the last "
			     "applied one",
			     s->file->name);
		return true;
	default: return false;
	}
}

size_t migplan_refusals(const struct migplan *plan, struct problems *p)
{
	size_t n = 0;

	for (size_t i = 0; i < plan->n; i++)
		n += refuse_step(&plan->v[i], p);
	return n;
}

void migplan_free(struct migplan *plan)
{
	free(plan->v);
	plan->v = NULL;
	plan->n = 0;
}

static const char *state_name(enum migplan_state state)
{
	switch (state) {
	case MIGPLAN_PENDING: return "new";
	case MIGPLAN_APPLIED: return "ok";
	case MIGPLAN_CHANGED: return "changed";
	case MIGPLAN_RENAMED: return "renamed";
	case MIGPLAN_MISSING: return "file missing";
	case MIGPLAN_OUT_OF_ORDER: return "out of order";
	}
	return "?";
}

static const char *step_name(const struct migplan_step *s)
{
	return s->file ? s->file->name : s->applied->name;
}

static void print_status_summary(const struct migplan *plan, FILE *out)
{
	size_t applied = 0;

	for (size_t i = 0; i < plan->n; i++)
		applied += plan->v[i].applied != NULL;
	fprintf(out, "%zu applied, %zu pending", applied,
		migplan_count(plan, MIGPLAN_PENDING) + migplan_count(plan, MIGPLAN_OUT_OF_ORDER));
	for (int st = MIGPLAN_CHANGED; st <= MIGPLAN_OUT_OF_ORDER; st++) {
		size_t n = migplan_count(plan, (enum migplan_state)st);
		if (n)
			fprintf(out, ", %zu %s", n, state_name((enum migplan_state)st));
	}
	fputc('\n', out);
}

void migplan_print_status(const struct migplan *plan, FILE *out)
{
	int w = 4;

	for (size_t i = 0; i < plan->n; i++)
		if ((int)strlen(step_name(&plan->v[i])) > w)
			w = (int)strlen(step_name(&plan->v[i]));
	fprintf(out, "%-7s  %-*s  %-20s  %s\n", "version", w, "name", "applied_at", "checksum");
	for (size_t i = 0; i < plan->n; i++) {
		const struct migplan_step *s = &plan->v[i];
		fprintf(out, "%04d     %-*s  %-20s  %s\n", s->version, w, step_name(s),
			s->applied ? s->applied->applied_at : "pending", state_name(s->state));
	}
	print_status_summary(plan, out);
}
