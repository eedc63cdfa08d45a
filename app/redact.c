/* redact: connection strings with every password replaced by "****".
 * Marks the bytes of every password in a mask, then copies the string with
 * each marked run replaced. It errs towards hiding too much: any string
 * libpq could read a password from must not show it, however odd. */
#include "redact.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "xalloc.h"

size_t redact_uri_prefix_len(const char *s, size_t len)
{
	size_t i = 0;

	if (len == 0 || !isalpha((unsigned char)s[0]))
		return 0;
	while (i < len &&
	       (isalnum((unsigned char)s[i]) || s[i] == '+' || s[i] == '-' || s[i] == '.'))
		i++;
	if (len - i >= 3 && memcmp(s + i, "://", 3) == 0)
		return i + 3;
	return 0;
}

static void mark(unsigned char *mask, size_t from, size_t to)
{
	if (to > from)
		memset(mask + from, 1, to - from);
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = (char)tolower((unsigned char)c);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* A parameter name that may name a secret: password and sslpassword, and
 * near misses libpq refuses but an operator may have typed ("passwd", "pwd")
 * -- any case, percent-decoded as libpq does in URIs; libpq 18's
 * oauth_client_secret and scram_client_key/scram_server_key (a SCRAM key
 * logs in as well as the password). Names too long to decode here are
 * treated as secret. */
static bool key_is_secret(const char *k, size_t len, bool percent)
{
	char name[64];
	size_t o = 0;

	for (size_t i = 0; i < len; i++, o++) {
		if (o + 1 >= sizeof name)
			return true;
		if (percent && k[i] == '%' && i + 2 < len && hexval(k[i + 1]) >= 0 &&
		    hexval(k[i + 2]) >= 0) {
			name[o] = (char)(hexval(k[i + 1]) * 16 + hexval(k[i + 2]));
			i += 2;
		} else {
			name[o] = k[i];
		}
		name[o] = (char)tolower((unsigned char)name[o]);
	}
	name[o] = '\0';
	return strstr(name, "pass") != NULL || strstr(name, "pwd") != NULL ||
	       strstr(name, "secret") != NULL || strstr(name, "scram") != NULL ||
	       memchr(name, '\0', o) != NULL;
}

/* URI query "a=b&password=x": libpq splits on '&' only. The query starts
 * at some '?' (not always the first: "[?]" can be a bracketed host), so a
 * parameter may begin after any '?' or '&'. */
static void mark_query(const char *s, size_t len, size_t start, unsigned char *mask)
{
	for (size_t i = start; i < len; i++) {
		size_t eq, end;

		if (s[i] != '?' && s[i] != '&')
			continue;
		for (eq = i + 1; eq < len && s[eq] != '=' && s[eq] != '&'; eq++)
			;
		if (eq >= len || s[eq] != '=' || !key_is_secret(s + i + 1, eq - i - 1, true))
			continue;
		for (end = eq + 1; end < len && s[end] != '&'; end++)
			;
		mark(mask, eq + 1, end);
	}
}

/* scheme://user:password@host...: libpq ends the userinfo at the first '@',
 * RFC 3986 at the last one in the authority; hiding from the first ':' to the
 * last '@' anywhere covers both and a password holding '@', ':', '/' or '?'. */
static void mark_uri(const char *s, size_t len, unsigned char *mask)
{
	size_t start = redact_uri_prefix_len(s, len), at = len, colon;

	for (size_t i = len; i > start; i--) {
		if (s[i - 1] == '@') {
			at = i - 1;
			break;
		}
	}
	if (at < len) {
		for (colon = start; colon < at && s[colon] != ':'; colon++)
			;
		if (colon < at)
			mark(mask, colon + 1, at);
	}
	mark_query(s, len, start, mask);
}

static size_t skip_space(const char *s, size_t len, size_t i)
{
	while (i < len && isspace((unsigned char)s[i]))
		i++;
	return i;
}

static bool keyword_ok(const char *k, size_t len)
{
	if (len == 0)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!isalnum((unsigned char)k[i]) && k[i] != '_')
			return false;
	return true;
}

/* End of a key=value value starting at i, per libpq's conninfo_parse:
 * 'quoted' with backslash escapes, or bare up to whitespace with backslash
 * escapes; len + 1 for an unterminated quote. */
static size_t kv_value_end(const char *s, size_t len, size_t i)
{
	if (i < len && s[i] == '\'') {
		for (i++; i < len; i++) {
			if (s[i] == '\\')
				i++;
			else if (s[i] == '\'')
				return i + 1;
		}
		return len + 1;
	}
	while (i < len && !isspace((unsigned char)s[i]))
		i += s[i] == '\\' ? 2 : 1;
	return i < len ? i : len;
}

/* dbname='postgres://u:pw@h/d' is not expanded by PQconninfoParse, but it
 * still carries a password. */
static void mark_nested_uri(const char *s, size_t from, size_t to, unsigned char *mask)
{
	if (to - from >= 2 && s[from] == '\'') {
		from++;
		to--;
	}
	if (redact_uri_prefix_len(s + from, to - from) > 0)
		mark_uri(s + from, to - from, mask + from);
}

/* One keyword = value pair at i; returns where the next one may start.
 * Anything libpq would refuse hides the rest of the string: we cannot know
 * where a password in it would end. */
static size_t mark_kv_pair(const char *s, size_t len, size_t i, unsigned char *mask)
{
	size_t key = i, keylen, val, end;

	while (i < len && s[i] != '=' && !isspace((unsigned char)s[i]))
		i++;
	keylen = i - key;
	i = skip_space(s, len, i);
	if (i >= len || s[i] != '=' || !keyword_ok(s + key, keylen)) {
		mark(mask, key, len);
		return len;
	}
	val = skip_space(s, len, i + 1);
	end = kv_value_end(s, len, val);
	if (end > len) {
		mark(mask, val, len);
		return len;
	}
	if (key_is_secret(s + key, keylen, false))
		mark(mask, val, end);
	else
		mark_nested_uri(s, val, end, mask);
	return end;
}

static void mark_kv(const char *s, size_t len, unsigned char *mask)
{
	size_t i = skip_space(s, len, 0);

	while (i < len) {
		i = mark_kv_pair(s, len, i, mask);
		i = skip_space(s, len, i);
	}
}

static void emit_masked(const char *s, size_t len, const unsigned char *mask, char *out,
			size_t outlen)
{
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		if (mask[i] && i > 0 && mask[i - 1])
			continue;
		if (o + (mask[i] ? 4 : 1) >= outlen)
			break;
		if (mask[i]) {
			memcpy(out + o, "****", 4);
			o += 4;
		} else {
			out[o++] = s[i];
		}
	}
	out[o] = '\0';
}

void redact_conninfo(const char *url, char *out, size_t outlen)
{
	unsigned char *mask;
	size_t len;

	if (outlen == 0)
		return;
	if (url == NULL) {
		out[0] = '\0';
		return;
	}
	len = strlen(url);
	mask = xcalloc(1, len + 1);
	if (redact_uri_prefix_len(url, len) > 0)
		mark_uri(url, len, mask);
	else
		mark_kv(url, len, mask);
	emit_masked(url, len, mask, out, outlen);
	free(mask);
}
