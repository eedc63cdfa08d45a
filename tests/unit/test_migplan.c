/* Unit tests of app/migplan.c: file names, ordering, gaps and duplicates,
 * checksums, the no-transaction marker, transaction control, reading a
 * directory, and plans from (files, applied rows) with the status table.
 * Every test owns a struct fx that the teardown frees, directory included,
 * however the test ended. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config.h"
#include "migfixture.h"
#include "migplan.h"

struct fx {
	struct migplan_files fs;
	struct migplan_applied_list al;
	struct migplan plan;
	struct problems p;
	char dir[64];
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	if (f == NULL || migfixture_dir_make(f->dir, sizeof(f->dir)) < 0) {
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

/* Everything a test added; a fresh start for the next case of a table. */
static void fx_clear(struct fx *f)
{
	migplan_free(&f->plan);
	migplan_applied_free(&f->al);
	migplan_files_free(&f->fs);
	problems_free(&f->p);
}

static int teardown(void **state)
{
	struct fx *f = *state;
	int rc = migfixture_dir_remove(f->dir);

	fx_clear(f);
	free(f);
	return rc;
}

/* ---- names, checksums, the marker: what migplan_files_add records ---- */

struct name_case {
	const char *name;
	bool valid;
	int version;
};

static const struct name_case names[] = {
	{ "0001_init.sql", true, 1 },       { "0002_add_users.sql", true, 2 },
	{ "0010_x.sql", true, 10 },         { "9999_last_one_2.sql", true, 9999 },
	{ "0003_v2.sql", true, 3 },         { "1_init.sql", false, 0 },
	{ "001_init.sql", false, 0 },       { "00001_init.sql", false, 0 },
	{ "0001-init.sql", false, 0 },      { "0001_.sql", false, 0 },
	{ "0001.sql", false, 0 },           { "abcd_x.sql", false, 0 },
	{ "0001_init.SQL", false, 0 },      { "0001_Init.sql", false, 0 },
	{ "0001_add-users.sql", false, 0 }, { "0001_init.sql~", false, 0 },
	{ "0001_init.sql.bak", false, 0 },  { "0001_init", false, 0 },
	{ "0001_in it.sql", false, 0 },     { "0000_zero.sql", false, 0 },
	{ "README.md", false, 0 },          { "", false, 0 },
};

static void name_table(void **state)
{
	struct fx *f = *state;

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		print_message("name \"%s\"\n", names[i].name);
		int rc = migplan_files_add(&f->fs, names[i].name, "SELECT 1;\n", 10, &f->p);
		assert_int_equal(rc, names[i].valid ? 0 : -1);
		if (names[i].valid) {
			assert_int_equal(f->fs.n, 1);
			assert_int_equal(f->fs.v[0].version, names[i].version);
			assert_int_equal(f->p.n, 0);
		} else {
			assert_int_equal(f->fs.n, 0);
			assert_int_equal(f->p.n, 1);
			assert_non_null(strstr(f->p.lines[0], ": not a migration file name"));
		}
		fx_clear(f);
	}
}

/* The checksum of data as migplan_files_add records it. */
static const char *checksum_of(struct fx *f, const char *data, size_t len)
{
	fx_clear(f);
	assert_int_equal(migplan_files_add(&f->fs, "0001_a.sql", data, len, &f->p), 0);
	return f->fs.v[0].checksum;
}

static void sha256_matches_sha256sum(void **state)
{
	struct fx *f = *state;
	const char *idx = "-- neonfcgi:no-transaction\n"
			  "CREATE INDEX CONCURRENTLY IF NOT EXISTS i ON t (x);\n";

	/* Expected values from `printf ... | sha256sum`. */
	assert_string_equal(checksum_of(f, "SELECT 1;\n", 10),
			    "b4e0497804e46e0a0b0b8c31975b062152d551bac49c3c2e80932567b4085dcd");
	assert_string_equal(checksum_of(f, "", 0),
			    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	assert_string_equal(checksum_of(f, idx, strlen(idx)),
			    "723c22369fddabdf1f915e96ba0a93ff40ddc1cea66c988046eda42539ed2579");
}

static void no_tx_marker(void **state)
{
	static const struct {
		const char *sql;
		bool marked;
	} cases[] = {
		{ "-- neonfcgi:no-transaction\nCREATE INDEX CONCURRENTLY i ON t (x);", true },
		{ "-- neonfcgi:no-transaction", true },
		{ "-- neonfcgi:no-transaction  \r\nSELECT 1;", true },
		{ "-- neonfcgi:no-transaction please\nSELECT 1;", false },
		{ "\n-- neonfcgi:no-transaction\nSELECT 1;", false },
		{ " -- neonfcgi:no-transaction\n", false },
		{ "-- NEONFCGI:NO-TRANSACTION\n", false },
		{ "SELECT 1; -- neonfcgi:no-transaction\n", false },
		{ "", false },
	};
	struct fx *f = *state;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		print_message("marker case %zu\n", i);
		fx_clear(f);
		assert_int_equal(migplan_files_add(&f->fs, "0001_a.sql", cases[i].sql,
						   strlen(cases[i].sql), &f->p),
				 0);
		assert_int_equal(f->fs.v[0].no_transaction, cases[i].marked);
	}
}

/* ---- files: ordering, gaps, duplicates, transaction control ---- */

static void add_all(struct fx *f, const char *const *list)
{
	for (; *list; list++)
		assert_int_equal(migplan_files_add(&f->fs, *list, "SELECT 1;\n", 10, &f->p), 0);
}

static void files_sorted_by_version(void **state)
{
	const char *const list[] = { "0003_c.sql", "0001_a.sql", "0004_d.sql", "0002_b.sql", NULL };
	struct fx *f = *state;

	add_all(f, list);
	assert_int_equal(migplan_files_check(&f->fs, &f->p), 0);
	assert_int_equal(f->p.n, 0);
	assert_int_equal(f->fs.n, 4);
	for (size_t i = 0; i < f->fs.n; i++)
		assert_int_equal(f->fs.v[i].version, (int)i + 1);
	assert_string_equal(f->fs.v[0].name, "0001_a.sql");
	assert_string_equal(f->fs.v[0].checksum,
			    "b4e0497804e46e0a0b0b8c31975b062152d551bac49c3c2e80932567b4085dcd");
}

static void gap_is_refused(void **state)
{
	const char *const list[] = { "0001_a.sql", "0003_c.sql", NULL };
	struct fx *f = *state;

	add_all(f, list);
	assert_int_equal(migplan_files_check(&f->fs, &f->p), -1);
	assert_int_equal(f->p.n, 1);
	assert_non_null(strstr(f->p.lines[0], "0003_c.sql"));
	assert_non_null(strstr(f->p.lines[0], "version 0002 is missing"));
}

static void first_version_must_be_0001(void **state)
{
	const char *const list[] = { "0004_d.sql", "0005_e.sql", NULL };
	struct fx *f = *state;

	add_all(f, list);
	assert_int_equal(migplan_files_check(&f->fs, &f->p), -1);
	assert_int_equal(f->p.n, 1);
	assert_non_null(strstr(f->p.lines[0], "versions 0001-0003 are missing"));
}

static void duplicate_is_refused(void **state)
{
	const char *const list[] = { "0001_a.sql", "0002_b.sql", "0002_a.sql", "0003_c.sql", NULL };
	struct fx *f = *state;

	add_all(f, list);
	assert_int_equal(migplan_files_check(&f->fs, &f->p), -1);
	assert_int_equal(f->p.n, 1);
	assert_string_equal(f->p.lines[0], "0002_a.sql and 0002_b.sql: duplicate version 0002");
}

static void bad_name_and_nul_are_refused(void **state)
{
	struct fx *f = *state;

	assert_int_equal(migplan_files_add(&f->fs, "0001-init.sql", "SELECT 1;", 9, &f->p), -1);
	assert_int_equal(migplan_files_add(&f->fs, "0001_init.sql", "SELECT\0 1;", 10, &f->p), -1);
	assert_int_equal(f->fs.n, 0);
	assert_int_equal(f->p.n, 2);
	assert_non_null(strstr(f->p.lines[0], "0001-init.sql: not a migration file name"));
	assert_non_null(strstr(f->p.lines[1], "NUL byte"));
}

struct txc_case {
	const char *sql;
	bool refused;
};

static void transaction_control_table(void **state)
{
	static const struct txc_case cases[] = {
		{ "CREATE TABLE t (a int);", false },
		{ "BEGIN;\nCREATE TABLE t (a int);\nCOMMIT;", true },
		{ "CREATE TABLE t (a int); COMMIT;", true },
		{ "START TRANSACTION; SELECT 1;", true },
		{ "SELECT 1; END;", true },
		{ "SELECT 1; ROLLBACK;", true },
		{ "SAVEPOINT s; SELECT 1; ROLLBACK TO SAVEPOINT s; RELEASE s;", false },
		{ "PREPARE TRANSACTION 'x';", true },
		{ "PREPARE q AS SELECT 1;", false },
		{ "DO $$ BEGIN PERFORM 1; END $$;", false },
		{ "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END;",
		  false },
		{ "-- neonfcgi:no-transaction\nBEGIN; SELECT 1; COMMIT;", false },
	};
	struct fx *f = *state;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		print_message("tx control case %zu\n", i);
		fx_clear(f);
		assert_int_equal(migplan_files_add(&f->fs, "0001_a.sql", cases[i].sql,
						   strlen(cases[i].sql), &f->p),
				 0);
		assert_int_equal(migplan_files_check(&f->fs, &f->p), cases[i].refused ? -1 : 0);
		if (cases[i].refused)
			assert_non_null(strstr(f->p.lines[0], "0001_a.sql line "));
	}
}

static void scan_dir_reads_and_refuses(void **state)
{
	struct fx *f = *state;
	char sub[128];

	migfixture_dir_write(f->dir, "0002_b.sql", "SELECT 2;\n");
	migfixture_dir_write(f->dir, "0001_a.sql", "SELECT 1;\n");
	migfixture_dir_write(f->dir, ".gitkeep", "");
	migfixture_dir_write(f->dir, ".0003_c.sql.swp", "junk");
	assert_int_equal(migplan_scan_dir(f->dir, &f->fs, &f->p), 0);
	assert_int_equal(f->fs.n, 2);
	assert_string_equal(f->fs.v[0].name, "0001_a.sql");
	assert_string_equal(f->fs.v[1].sql, "SELECT 2;\n");
	fx_clear(f);

	migfixture_dir_write(f->dir, "README.md", "notes");
	snprintf(sub, sizeof(sub), "%s/0003_dir.sql", f->dir);
	assert_int_equal(mkdir(sub, 0700), 0);
	assert_int_equal(migplan_scan_dir(f->dir, &f->fs, &f->p), -1);
	assert_int_equal(f->p.n, 2);
	bool readme = false, notreg = false;
	for (size_t i = 0; i < f->p.n; i++) {
		readme |= strstr(f->p.lines[i], "README.md: not a migration file name") != NULL;
		notreg |= strstr(f->p.lines[i], "0003_dir.sql: not a regular file") != NULL;
	}
	assert_true(readme && notreg);
	fx_clear(f);

	assert_int_equal(migplan_scan_dir("/nonexistent/neonfcgi-migrations", &f->fs, &f->p), -1);
	assert_non_null(
	    strstr(f->p.lines[0], "MIGRATIONS_DIR=\"/nonexistent/neonfcgi-migrations\""));
}

/* ---- plans ---- */

/* Files 0001_m1.sql … n, checked. */
static void make_files(struct fx *f, int n)
{
	char name[32], sql[32];

	for (int v = 1; v <= n; v++) {
		snprintf(name, sizeof(name), "%04d_m%d.sql", v, v);
		snprintf(sql, sizeof(sql), "SELECT %d;\n", v);
		assert_int_equal(migplan_files_add(&f->fs, name, sql, strlen(sql), &f->p), 0);
	}
	assert_int_equal(migplan_files_check(&f->fs, &f->p), 0);
}

/* Applied rows for versions, recorded from the files of the same version
 * (0099_gone.sql with checksum "00" where there is none). */
static void applied_from(struct fx *f, const int *versions, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const struct migplan_file *file = NULL;
		for (size_t k = 0; k < f->fs.n; k++)
			if (f->fs.v[k].version == versions[i])
				file = &f->fs.v[k];
		migplan_applied_add(&f->al, versions[i], file ? file->name : "0099_gone.sql",
				    file ? file->checksum : "00", "2026-01-02 03:04:05Z");
	}
}

struct plan_case {
	int nfiles;
	int applied[8];
	size_t napplied;
	const char *states; /* one letter a step: P A C R M O */
	size_t refusals;
	/* mutations of the applied rows */
	int changed_version, renamed_version;
};

static char state_letter(enum migplan_state s)
{
	return "PACRMO"[s];
}

static const struct plan_case plans[] = {
	{ 3, { 0 }, 0, "PPP", 0, 0, 0 },       /* fresh database */
	{ 3, { 1, 2, 3 }, 3, "AAA", 0, 0, 0 }, /* up to date */
	{ 3, { 1 }, 1, "APP", 0, 0, 0 },       /* two pending */
	{ 3, { 1, 2 }, 2, "ACP", 1, 2, 0 },    /* 0002 edited after applying */
	{ 3, { 1, 2 }, 2, "ARP", 1, 0, 2 },    /* 0002 renamed */
	{ 2, { 1, 2, 3 }, 3, "AAM", 0, 0, 0 }, /* older release, newer database */
	{ 3, { 1, 3 }, 2, "AOA", 1, 0, 0 },    /* 0002 came after 0003 */
	{ 0, { 1, 2 }, 2, "MM", 0, 0, 0 },     /* empty directory */
	{ 0, { 0 }, 0, "", 0, 0, 0 },
};

static void plan_case(struct fx *f, const struct plan_case *c)
{
	char got[16] = "";

	make_files(f, c->nfiles);
	applied_from(f, c->applied, c->napplied);
	for (size_t k = 0; k < f->al.n; k++) {
		struct migplan_applied *a = &f->al.v[k];
		if (a->version == c->changed_version)
			a->checksum[0] = a->checksum[0] == '0' ? '1' : '0';
		if (a->version == c->renamed_version)
			snprintf(a->name, sizeof(a->name), "0002_old_name.sql");
	}
	migplan_build(&f->fs, &f->al, &f->plan);
	for (size_t k = 0; k < f->plan.n; k++)
		got[k] = state_letter(f->plan.v[k].state);
	assert_string_equal(got, c->states);
	assert_int_equal(migplan_refusals(&f->plan, &f->p), c->refusals);
	assert_int_equal(f->p.n, c->refusals);
	if (c->changed_version)
		assert_non_null(strstr(f->p.lines[0], "0002_m2.sql: changed after it was applied"));
	if (c->renamed_version)
		assert_non_null(strstr(f->p.lines[0], "was applied as 0002_old_name.sql"));
}

static void plan_table(void **state)
{
	struct fx *f = *state;

	for (size_t i = 0; i < sizeof(plans) / sizeof(plans[0]); i++) {
		print_message("plan case %zu\n", i);
		fx_clear(f);
		plan_case(f, &plans[i]);
	}
}

static void status_table_shows_every_state(void **state)
{
	const int applied[] = { 1, 2, 5 };
	struct fx *f = *state;
	char buf[2048];

	make_files(f, 3);
	applied_from(f, applied, 3);
	f->al.v[1].checksum[0] = f->al.v[1].checksum[0] == '0' ? '1' : '0';
	migplan_build(&f->fs, &f->al, &f->plan);
	FILE *out = fmemopen(buf, sizeof(buf), "w");
	assert_non_null(out);
	migplan_print_status(&f->plan, out);
	fclose(out);
	print_message("%s", buf);
	assert_non_null(strstr(buf, "version  name           applied_at            checksum\n"));
	assert_non_null(strstr(buf, "0001     0001_m1.sql    2026-01-02 03:04:05Z  ok\n"));
	assert_non_null(strstr(buf, "0002     0002_m2.sql    2026-01-02 03:04:05Z  changed\n"));
	assert_non_null(
	    strstr(buf, "0003     0003_m3.sql    pending               out of order\n"));
	assert_non_null(
	    strstr(buf, "0005     0099_gone.sql  2026-01-02 03:04:05Z  file missing\n"));
	assert_non_null(
	    strstr(buf, "3 applied, 1 pending, 1 changed, 1 file missing, 1 out of order"));
}

/* Every test gets a fresh fixture, removed however it ends. */
#define TEST(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		TEST(name_table),
		TEST(sha256_matches_sha256sum),
		TEST(no_tx_marker),
		TEST(files_sorted_by_version),
		TEST(gap_is_refused),
		TEST(first_version_must_be_0001),
		TEST(duplicate_is_refused),
		TEST(bad_name_and_nul_are_refused),
		TEST(transaction_control_table),
		TEST(scan_dir_reads_and_refuses),
		TEST(plan_table),
		TEST(status_table_shows_every_state),
	};

	return cmocka_run_group_tests_name("migplan", tests, NULL, NULL);
}
