/* migsplit: splitting SQL into statements, as psql does (psqlscan.l): what
 * the runner sends one statement at a time in a no-transaction file, and what
 * the plan checks for transaction control. It reads untrusted files, so it
 * never reads past the terminating NUL, however a quote or comment ends. */
#include "migsplit.h"

#include <string.h>
#include <strings.h>

#include "xalloc.h"

struct lexer {
	const char *s;
	size_t len; /* strlen(s), measured once */
	size_t i;
	int line;
	int paren;
	int begin_depth; /* BEGIN … END nesting in a CREATE FUNCTION/PROCEDURE */
	int nwords;
	char lead[4]; /* initials of the first words when they are create/or/… */
	bool in_stmt;
	struct migsplit_stmt cur;
};

struct stmt_list {
	struct migsplit_stmt *v;
	size_t n, cap;
};

static void lx_step(struct lexer *lx)
{
	if (lx->s[lx->i] == '\n')
		lx->line++;
	lx->i++;
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool is_ident_start(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c >= 0x80;
}

static bool is_ident_char(unsigned char c)
{
	return is_ident_start(c) || is_digit((char)c) || c == '$';
}

static void lx_skip_block_comment(struct lexer *lx)
{
	const char *s = lx->s;
	int depth = 0;

	/* PostgreSQL block comments nest, unlike C's. */
	while (s[lx->i]) {
		if (s[lx->i] == '/' && s[lx->i + 1] == '*') {
			depth++;
			lx->i += 2;
		} else if (s[lx->i] == '*' && s[lx->i + 1] == '/') {
			lx->i += 2;
			if (--depth == 0)
				return;
		} else {
			lx_step(lx);
		}
	}
}

static void lx_skip_blank(struct lexer *lx)
{
	const char *s = lx->s;

	for (;;) {
		char c = s[lx->i];
		if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v')
			lx_step(lx);
		else if (c == '-' && s[lx->i + 1] == '-')
			while (s[lx->i] && s[lx->i] != '\n')
				lx_step(lx);
		else if (c == '/' && s[lx->i + 1] == '*')
			lx_skip_block_comment(lx);
		else
			return;
	}
}

/* '…' ('' escapes; backslash escapes too for E'…') or "…" (an identifier). */
static void lx_skip_quoted(struct lexer *lx, char q, bool backslash)
{
	const char *s = lx->s;

	lx_step(lx);
	while (s[lx->i]) {
		if (backslash && s[lx->i] == '\\' && s[lx->i + 1]) {
			lx_step(lx);
		} else if (s[lx->i] == q) {
			lx_step(lx);
			if (s[lx->i] != q)
				return; /* a doubled quote is an escaped one */
		}
		lx_step(lx);
	}
}

/* The closing tag at or after p, or NULL. Each look ends at the first byte
 * that differs, and the tag has no '$' between its two, so a partial match
 * never reaches the next '$': the search reads each byte about once. (A
 * strlen, or a memmem over the rest of the text, for every dollar quote made
 * a file of many of them quadratic.) */
static const char *find_close_tag(const char *p, const char *tag, size_t taglen)
{
	while ((p = strchr(p, '$')) != NULL) {
		size_t k = 1;
		while (k < taglen && p[k] == tag[k])
			k++;
		if (k == taglen)
			return p;
		p++;
	}
	return NULL;
}

/* $tag$ … $tag$ (function bodies, DO blocks); false when the '$' opens none
 * ($1, or a lone '$'), so the caller treats it as an ordinary character. */
static bool lx_skip_dollar(struct lexer *lx)
{
	const char *s = lx->s + lx->i;
	size_t n = 1;

	while (s[n] != '$') {
		unsigned char c = (unsigned char)s[n];
		if (!(n == 1 ? is_ident_start(c) : (is_ident_char(c) && c != '$')))
			return false;
		n++;
	}
	size_t taglen = n + 1;
	const char *close = find_close_tag(s + taglen, s, taglen);
	size_t stop = close ? (size_t)(close - lx->s) + taglen : lx->len;
	while (lx->i < stop)
		lx_step(lx);
	return true;
}

static bool word_is(const char *w, size_t n, const char *kw)
{
	return strlen(kw) == n && strncasecmp(w, kw, n) == 0;
}

static void copy_lower(char *dst, size_t dstlen, const char *w, size_t n)
{
	size_t k = 0;

	for (; k < n && k + 1 < dstlen; k++)
		dst[k] = (w[k] >= 'A' && w[k] <= 'Z') ? (char)(w[k] - 'A' + 'a') : w[k];
	dst[k] = '\0';
}

static bool lx_in_routine(const struct lexer *lx)
{
	const char *l = lx->lead;

	return l[0] == 'c' && (l[1] == 'f' || l[1] == 'p' ||
			       (l[1] == 'o' && l[2] == 'r' && (l[3] == 'f' || l[3] == 'p')));
}

/* psql's heuristic (psqlscan.l): in CREATE [OR REPLACE] FUNCTION|PROCEDURE,
 * BEGIN … END (and CASE … END inside it) enclose a BEGIN ATOMIC body whose
 * semicolons do not end the statement. */
static void lx_note_word(struct lexer *lx, const char *w, size_t n)
{
	static const char *const lead_words[] = { "create", "or", "replace", "function",
						  "procedure" };

	if (lx->nwords == 0)
		copy_lower(lx->cur.keyword, sizeof(lx->cur.keyword), w, n);
	else if (lx->nwords == 1)
		copy_lower(lx->cur.keyword2, sizeof(lx->cur.keyword2), w, n);
	for (size_t k = 0; lx->nwords < 4 && k < sizeof(lead_words) / sizeof(*lead_words); k++)
		if (word_is(w, n, lead_words[k]))
			lx->lead[lx->nwords] = lead_words[k][0];
	lx->nwords++;
	if (!lx_in_routine(lx) || lx->paren > 0)
		return;
	if (word_is(w, n, "begin"))
		lx->begin_depth++;
	else if (word_is(w, n, "case") && lx->begin_depth > 0)
		lx->begin_depth++;
	else if (word_is(w, n, "end") && lx->begin_depth > 0)
		lx->begin_depth--;
}

static void lx_word(struct lexer *lx)
{
	size_t start = lx->i;

	while (is_ident_char((unsigned char)lx->s[lx->i]))
		lx->i++;
	size_t n = lx->i - start;
	/* E'…' is a string with backslash escapes, not the word "E". */
	if (n == 1 && (lx->s[start] == 'e' || lx->s[start] == 'E') && lx->s[lx->i] == '\'') {
		lx_skip_quoted(lx, '\'', true);
		return;
	}
	lx_note_word(lx, lx->s + start, n);
}

static void lx_token(struct lexer *lx)
{
	unsigned char c = (unsigned char)lx->s[lx->i];

	if (c == '\'' || c == '"') {
		lx_skip_quoted(lx, (char)c, false);
	} else if (c == '$' && lx_skip_dollar(lx)) {
		/* skipped */
	} else if (is_ident_start(c)) {
		lx_word(lx);
	} else if (is_digit((char)c)) {
		while (is_ident_char((unsigned char)lx->s[lx->i]) || lx->s[lx->i] == '.')
			lx->i++;
	} else {
		if (c == '(')
			lx->paren++;
		else if (c == ')' && lx->paren > 0)
			lx->paren--;
		lx_step(lx);
	}
	lx->cur.end = lx->i;
}

static void lx_end_stmt(struct lexer *lx, struct stmt_list *list)
{
	if (lx->in_stmt) {
		if (list->n == list->cap) {
			list->cap = list->cap ? 2 * list->cap : 16;
			list->v = xrealloc(list->v, list->cap * sizeof(*list->v));
		}
		list->v[list->n++] = lx->cur;
	}
	memset(&lx->cur, 0, sizeof(lx->cur));
	memset(lx->lead, 0, sizeof(lx->lead));
	lx->paren = lx->begin_depth = lx->nwords = 0;
	lx->in_stmt = false;
}

size_t migsplit_sql(const char *sql, struct migsplit_stmt **out)
{
	struct lexer lx = { .s = sql, .len = strlen(sql), .line = 1 };
	struct stmt_list list = { 0 };

	for (;;) {
		lx_skip_blank(&lx);
		char c = sql[lx.i];
		if (!c)
			break;
		if (c == ';' && lx.paren == 0 && lx.begin_depth == 0) {
			lx_end_stmt(&lx, &list);
			lx.i++;
			continue;
		}
		if (!lx.in_stmt) {
			lx.in_stmt = true;
			lx.cur.start = lx.i;
			lx.cur.line = lx.line;
		}
		lx_token(&lx);
	}
	lx_end_stmt(&lx, &list);
	*out = list.v;
	return list.n;
}

bool migsplit_is_tx_control(const struct migsplit_stmt *st)
{
	static const char *const words[] = { "begin", "start", "commit", "end", "abort" };

	if (!strcmp(st->keyword, "rollback"))
		return strcmp(st->keyword2, "to") != 0; /* ROLLBACK TO SAVEPOINT is fine */
	if (!strcmp(st->keyword, "prepare"))
		return !strcmp(st->keyword2, "transaction");
	for (size_t i = 0; i < sizeof(words) / sizeof(*words); i++)
		if (!strcmp(st->keyword, words[i]))
			return true;
	return false;
}
