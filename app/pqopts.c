/* pqopts: facts about libpq's connection options from its documentation
 * (sources beside each table); the unit tests check the tables against the
 * linked libpq (PQconndefaults, and the values it accepts). */
#include "pqopts.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define KEYWORD_MAX 64 /* longer quoted names are not keywords */

/* Options added after libpq 13, with the release that added each, as the
 * release notes' libpq (and authentication) items and the
 * postgresql.org/docs/N/libpq-connect.html pages give them:
 * 14: sslsni (commit 5c55dc8b4), sslcrldir (f5465fade);
 * 16: require_auth (3a465cc67), sslcertmode (36f40ce2d), load_balance_hosts
 *     (7f5b19817), gssdelegation (Kerberos credential delegation, 6633cfb21);
 * 17: sslnegotiation (direct TLS);
 * 18: sslkeylogfile (2da74d8d6), min/max_protocol_version (285613c60),
 *     scram_client_key/scram_server_key (postgres_fdw SCRAM pass-through,
 *     761c79508), oauth_issuer, oauth_client_id, oauth_client_secret and
 *     oauth_scope (the OAuth authentication method). */
static const struct {
	const char *keyword;
	int since;
} introduced[] = {
	{ "sslsni", 14 },
	{ "sslcrldir", 14 },
	{ "require_auth", 16 },
	{ "sslcertmode", 16 },
	{ "load_balance_hosts", 16 },
	{ "gssdelegation", 16 },
	{ "sslnegotiation", 17 },
	{ "sslkeylogfile", 18 },
	{ "min_protocol_version", 18 },
	{ "max_protocol_version", 18 },
	{ "scram_client_key", 18 },
	{ "scram_server_key", 18 },
	{ "oauth_issuer", 18 },
	{ "oauth_client_id", 18 },
	{ "oauth_client_secret", 18 },
	{ "oauth_scope", 18 },
};

int pqopts_since(const char *keyword)
{
	for (size_t i = 0; i < sizeof introduced / sizeof introduced[0]; i++)
		if (strcmp(introduced[i].keyword, keyword) == 0)
			return introduced[i].since;
	return 0;
}

/* Enumerated options, with the values postgresql.org/docs/18/libpq-connect.html
 * lists, compared as libpq compares them: strcmp, but pg_strcasecmp for the
 * TLS protocol versions (tried against libpq 15.18). An empty value is
 * libpq's default for every one of them. */
static const struct {
	const char *keyword;
	bool any_case;
	const char *valid; /* for messages */
	const char *const values[7];
} enums[] = {
	{ "channel_binding",
	  false,
	  "disable, prefer or require",
	  { "disable", "prefer", "require", NULL } },
	{ "gssencmode",
	  false,
	  "disable, prefer or require",
	  { "disable", "prefer", "require", NULL } },
	{ "target_session_attrs",
	  false,
	  "any, read-write, read-only, primary, standby or prefer-standby",
	  { "any", "read-write", "read-only", "primary", "standby", "prefer-standby", NULL } },
	{ "ssl_min_protocol_version",
	  true,
	  "TLSv1, TLSv1.1, TLSv1.2 or TLSv1.3",
	  { "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3", NULL } },
	{ "ssl_max_protocol_version",
	  true,
	  "TLSv1, TLSv1.1, TLSv1.2 or TLSv1.3",
	  { "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3", NULL } },
	/* libpq 16 and later */
	{ "sslcertmode",
	  false,
	  "disable, allow or require",
	  { "disable", "allow", "require", NULL } },
	{ "load_balance_hosts", false, "disable or random", { "disable", "random", NULL } },
	/* libpq 17 and later */
	{ "sslnegotiation", false, "postgres or direct", { "postgres", "direct", NULL } },
	/* libpq 18 and later */
	{ "min_protocol_version", false, "3.0, 3.2 or latest", { "3.0", "3.2", "latest", NULL } },
	{ "max_protocol_version", false, "3.0, 3.2 or latest", { "3.0", "3.2", "latest", NULL } },
};

bool pqopts_value_ok(const char *keyword, const char *value, const char **valid)
{
	*valid = NULL;
	for (size_t i = 0; i < sizeof enums / sizeof enums[0]; i++) {
		if (strcmp(enums[i].keyword, keyword) != 0)
			continue;
		*valid = enums[i].valid;
		if (*value == '\0')
			return true;
		for (const char *const *v = enums[i].values; *v != NULL; v++)
			if ((enums[i].any_case ? strcasecmp(*v, value) : strcmp(*v, value)) == 0)
				return true;
		return false;
	}
	return true;
}

/* libpq's keywords: lower-case letters, digits and '_', a letter first. */
static bool keyword_syntax(const char *s, size_t len)
{
	if (len == 0 || len >= KEYWORD_MAX || !islower((unsigned char)s[0]))
		return false;
	for (size_t i = 0; i < len; i++)
		if (!islower((unsigned char)s[i]) && !isdigit((unsigned char)s[i]) && s[i] != '_')
			return false;
	return true;
}

bool pqopts_refused_name(const char *msg, char *name, size_t len)
{
	/* fe-connect.c's texts (untranslated: the process keeps the C locale) */
	static const char *const prefixes[] = { "invalid connection option \"",
						"invalid URI query parameter: \"", NULL };

	for (size_t i = 0; prefixes[i] != NULL; i++) {
		size_t plen = strlen(prefixes[i]);
		const char *start, *end;

		if (strncmp(msg, prefixes[i], plen) != 0)
			continue;
		start = msg + plen;
		end = strchr(start, '"');
		if (end == NULL || !keyword_syntax(start, (size_t)(end - start)) ||
		    (size_t)(end - start) >= len)
			return false;
		snprintf(name, len, "%.*s", (int)(end - start), start);
		return true;
	}
	return false;
}
