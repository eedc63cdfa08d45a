/* libFuzzer target: migsplit_sql on arbitrary text (a migration file is
 * refused at its first NUL byte, so the text ends there).
 *
 * Beyond ASan/UBSan, it checks what the runner relies on when it sends a
 * no-transaction file one statement at a time: the statements lie in order
 * inside the text, each is exactly one statement on its own (splitting its
 * text again gives it back, first words included), what lies between them is
 * only blanks, comments and semicolons (splitting it gives nothing), and each
 * statement's line is the line its first byte is on. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "migsplit.h"
#include "xalloc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Lower case, as an identifier's bytes (letters, digits, '_', '$', non-ASCII). */
static void check_keyword(const char *k, size_t len)
{
	if (strnlen(k, len) == len)
		abort(); /* not terminated */
	for (; *k != '\0'; k++)
		if (!((*k >= 'a' && *k <= 'z') || (*k >= '0' && *k <= '9') || *k == '_' ||
		      *k == '$' || (unsigned char)*k >= 0x80))
			abort();
}

/* The text between statements: blanks, comments and ';' only. */
static void check_gap(const char *sql, size_t from, size_t to)
{
	struct migsplit_stmt *st = NULL;
	char *gap = xstrndup(sql + from, to - from);

	if (migsplit_sql(gap, &st) != 0)
		abort();
	free(st);
	free(gap);
}

/* Split again alone, the statement is itself: one statement, all of it. */
static void check_alone(const char *sql, const struct migsplit_stmt *s)
{
	struct migsplit_stmt *st = NULL;
	char *text = xstrndup(sql + s->start, s->end - s->start);

	if (migsplit_sql(text, &st) != 1 || st[0].start != 0 || st[0].end != s->end - s->start ||
	    st[0].line != 1 || strcmp(st[0].keyword, s->keyword) != 0 ||
	    strcmp(st[0].keyword2, s->keyword2) != 0 ||
	    migsplit_is_tx_control(&st[0]) != migsplit_is_tx_control(s))
		abort();
	free(st);
	free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *sql = xstrndup((const char *)data, size);
	size_t len = strlen(sql), prev_end = 0, semicolons = 0;
	struct migsplit_stmt *st = NULL;
	size_t n = migsplit_sql(sql, &st);
	int line = 1;
	size_t counted = 0; /* line holds the line of byte counted */

	for (size_t i = 0; i < len; i++)
		semicolons += sql[i] == ';';
	if (n > semicolons + 1 || (n > 0) != (st != NULL))
		abort();
	for (size_t i = 0; i < n; i++) {
		const struct migsplit_stmt *s = &st[i];
		if (s->start >= s->end || s->end > len || (i > 0 && s->start <= prev_end))
			abort();
		for (; counted < s->start; counted++)
			line += sql[counted] == '\n';
		if (s->line != line)
			abort();
		check_keyword(s->keyword, sizeof(s->keyword));
		check_keyword(s->keyword2, sizeof(s->keyword2));
		check_gap(sql, prev_end, s->start);
		check_alone(sql, s);
		prev_end = s->end;
	}
	check_gap(sql, prev_end, len);
	free(st);
	free(sql);
	return 0;
}
