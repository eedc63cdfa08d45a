/* migsplit: a migration file's SQL text split into statements as psql would
 * split it (quotes, comments, dollar quotes, parentheses, BEGIN ATOMIC bodies).
 * A parser of untrusted files: pure, no I/O. */
#ifndef NEONFCGI_MIGSPLIT_H
#define NEONFCGI_MIGSPLIT_H

#include <stdbool.h>
#include <stddef.h>

/* One statement of a SQL text. */
struct migsplit_stmt {
	size_t start, end; /* byte offsets; end excludes the ';' */
	int line;          /* 1-based line of the first byte */
	char keyword[16];  /* first word, lower case ("" when it is not a word) */
	char keyword2[16]; /* second word, lower case */
};

/* Split the NUL-terminated sql at top-level semicolons (not in quotes,
 * comments, dollar quotes, parentheses or a CREATE FUNCTION … BEGIN ATOMIC
 * body); empty statements are dropped. Returns the count; *out (caller frees)
 * may be NULL when 0. */
size_t migsplit_sql(const char *sql, struct migsplit_stmt **out);
/* True for a statement that ends or opens a transaction (BEGIN, COMMIT,
 * ROLLBACK but not ROLLBACK TO, PREPARE TRANSACTION, …). */
bool migsplit_is_tx_control(const struct migsplit_stmt *st);

#endif
