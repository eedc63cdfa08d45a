/* dberror: categories and their classification (DESIGN.md §4, §5).
 *
 * libpq reports a failed connect as text; with verbose errors a server's
 * refusal carries its SQLSTATE ("FATAL:  28P01:  …"). PostgreSQL's own
 * SQLSTATEs decide by themselves. Neon's proxy sends every error of its own
 * as XX000 (proxy/src/stream.rs writes SQLSTATE_INTERNAL_ERROR for all of
 * them) and relays the compute's start-up errors the same way, so XX000 is
 * decided by its text (texts from proxy/src/control_plane/messages.rs,
 * errors.rs and proxy/src/auth/). */
#include "dberror.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xalloc.h"

/* Retry-After for failures that need an operator (DESIGN.md §4: at least 30
 * for endpoint, quota and auth), for Neon's rate limit (at least 5), behind
 * an open breaker (its cooldown), and for the rest (a quick look again). */
#define RETRY_AFTER_OPERATOR_S 30
#define RETRY_AFTER_RATE_S     5
#define RETRY_AFTER_BREAKER_S  2
#define RETRY_AFTER_S          1

const char *db_category_name(enum db_category c)
{
	static const char *const names[DB_CATEGORY_COUNT] = {
		[DB_OK] = "ok",
		[DB_TIMEOUT] = "timeout",
		[DB_UNREACHABLE] = "unreachable",
		[DB_TLS] = "tls",
		[DB_AUTH] = "auth",
		[DB_REJECTED] = "rejected",
		[DB_QUERY_FAILED] = "query_failed",
		[DB_POOL_TIMEOUT] = "pool_timeout",
		[DB_CIRCUIT_OPEN] = "circuit_open",
		[DB_ENDPOINT] = "endpoint",
		[DB_QUOTA] = "quota",
		[DB_RATE_LIMITED] = "rate_limited",
	};
	if ((unsigned)c >= DB_CATEGORY_COUNT || !names[c])
		return "unknown";
	return names[c];
}

void dberror_set(struct db_error *err, enum db_category cat, bool transient, const char *sqlstate,
		 const char *message)
{
	err->category = cat;
	err->transient = transient;
	snprintf(err->sqlstate, sizeof err->sqlstate, "%s", sqlstate ? sqlstate : "");
	snprintf(err->message, sizeof err->message, "%s", message ? message : "");
}

void dberror_clear(struct db_error *err)
{
	dberror_set(err, DB_OK, false, "", "");
}

struct rule {
	const char *match; /* SQLSTATE prefix, or lower-case text to find */
	enum db_category category;
	bool transient;
	const char *description;
};

static const struct rule sqlstate_rules[] = {
	{ "28P01", DB_AUTH, false, "password authentication failed" },
	{ "28000", DB_AUTH, false, "authorization failed (role or pg_hba.conf)" },
	{ "3D000", DB_REJECTED, false, "database does not exist" },
	/* 57P01 is also Neon suspending an idle compute. */
	{ "57P01", DB_REJECTED, true, "server terminated the session (administrator command)" },
	{ "57P02", DB_REJECTED, true, "server terminated the session (crash shutdown)" },
	{ "57P03", DB_REJECTED, true, "server is not accepting connections yet" },
	{ "53300", DB_REJECTED, true, "too many connections" },
	{ "53", DB_REJECTED, true, "server out of resources" },
	{ "08", DB_UNREACHABLE, true, "connection failure" },
};

/* The rows of Neon's proxy whose wording PostgreSQL never uses: they decide
 * with or without a SQLSTATE. Rate limits come before PostgreSQL's "too many
 * connections", which they contain. */
#define NEON_SPECIFIC_RULES                                                                        \
	{ "endpoint cannot be found", DB_ENDPOINT, false, "endpoint not found" },                  \
	    { "endpoint not found", DB_ENDPOINT, false, "endpoint not found" },                    \
	    { "endpoint could not be found", DB_ENDPOINT, false, "endpoint not found" },           \
	    { "endpoint is disabled", DB_ENDPOINT, false, "endpoint is disabled" },                \
	    { "endpoint id is not specified", DB_ENDPOINT, false, "endpoint ID not given" },       \
	    { "too many connections attempts", DB_RATE_LIMITED, false,                             \
	      "too many connection attempts" },                                                    \
	    { "too many database connection attempts", DB_RATE_LIMITED, false,                     \
	      "too many connection attempts" },                                                    \
	    { "too many connections to this endpoint", DB_RATE_LIMITED, false,                     \
	      "too many connections to this endpoint" },                                           \
	    { "rate limit", DB_RATE_LIMITED, false, "rate limited" },                              \
	{                                                                                          \
		"couldn't connect to compute node", DB_UNREACHABLE, true,                          \
		    "proxy could not reach the compute"                                            \
	}

/* XX000 (DESIGN.md §5's table): first match wins. */
static const struct rule xx000_rules[] = {
	{ "too many clients", DB_REJECTED, true, "too many connections" },
	{ "the database system is starting up", DB_UNREACHABLE, true,
	  "database system is starting up" },
	{ "shutting down", DB_UNREACHABLE, true, "database system is shutting down" },
	{ "terminating connection", DB_UNREACHABLE, true, "server terminated the session" },
	NEON_SPECIFIC_RULES,
	{ "quota", DB_QUOTA, false, "quota exceeded" },
	{ "temporarily unavailable", DB_QUOTA, false, "endpoint temporarily unavailable" },
	{ "limit exceeded", DB_QUOTA, false, "limit exceeded" },
	/* The control plane's own wording for the same limits (passed through
	 * by the proxy): active endpoints, and a branch's compute time. */
	{ "concurrently active endpoints", DB_QUOTA, false, "active endpoints limit exceeded" },
	{ "exceeded the compute time", DB_QUOTA, false, "compute time exceeded" },
	{ "password authentication failed", DB_AUTH, false, "password authentication failed" },
	{ "authentication failed", DB_AUTH, false, "authentication failed" },
	/* The proxy does SCRAM itself: its protocol and channel-binding
	 * failures are authentication failures, not refusals. */
	{ "authentication protocol violation", DB_AUTH, false, "SCRAM exchange failed" },
	{ "scram", DB_AUTH, false, "SCRAM exchange failed" },
	{ "secure channel data mismatch", DB_AUTH, false, "channel binding failed" },
};

/* Without a SQLSTATE (libpq's own failures, or a server's text). The order
 * matters: EOF inside TLS is the network, not a TLS misconfiguration; auth
 * failures mention "SSL" in pg_hba wording; "does not exist" is also said of
 * certificate files. */
static const struct rule message_rules[] = {
	NEON_SPECIFIC_RULES,
	{ "ssl syscall error", DB_UNREACHABLE, true, "connection closed during TLS" },
	{ "ssl connection has been closed unexpectedly", DB_UNREACHABLE, true,
	  "connection closed during TLS" },
	{ "unexpected eof", DB_UNREACHABLE, true, "connection closed during TLS" },
	{ "server closed the connection unexpectedly", DB_UNREACHABLE, true,
	  "server closed the connection" },
	{ "connection reset", DB_UNREACHABLE, true, "connection reset" },
	{ "broken pipe", DB_UNREACHABLE, true, "connection reset" },
	{ "password authentication failed", DB_AUTH, false, "password authentication failed" },
	{ "channel binding", DB_AUTH, false, "channel binding failed" },
	{ "scram", DB_AUTH, false, "SCRAM authentication failed" },
	{ "no password supplied", DB_AUTH, false, "no password supplied" },
	{ "pg_hba.conf", DB_AUTH, false, "rejected by pg_hba.conf" },
	{ "role \"\" does not exist", DB_AUTH, false, "role does not exist" },
	{ "authentication failed", DB_AUTH, false, "authentication failed" },
	{ "server does not support ssl", DB_TLS, false, "server does not support TLS" },
	{ "certificate", DB_TLS, false, "TLS certificate verification failed" },
	{ "ssl", DB_TLS, false, "TLS negotiation failed" },
	{ "tls", DB_TLS, false, "TLS negotiation failed" },
	{ "too many connections", DB_REJECTED, true, "too many connections" },
	{ "too many clients", DB_REJECTED, true, "too many connections" },
	{ "remaining connection slots", DB_REJECTED, true, "too many connections" },
	{ "starting up", DB_REJECTED, true, "database system is starting up" },
	{ "shutting down", DB_REJECTED, true, "database system is shutting down" },
	{ "in recovery", DB_REJECTED, true, "database system is in recovery" },
	{ "not yet accepting connections", DB_REJECTED, true,
	  "server is not accepting connections yet" },
	{ "terminating connection", DB_REJECTED, true, "server terminated the session" },
	{ "does not exist", DB_REJECTED, false, "database does not exist" },
	{ "connection refused", DB_UNREACHABLE, true, "connection refused" },
	{ "no route to host", DB_UNREACHABLE, true, "no route to host" },
	{ "network is unreachable", DB_UNREACHABLE, true, "network is unreachable" },
	{ "host is down", DB_UNREACHABLE, true, "host is down" },
	{ "could not translate host name", DB_UNREACHABLE, true, "could not resolve host name" },
	{ "could not resolve", DB_UNREACHABLE, true, "could not resolve host name" },
	{ "name or service not known", DB_UNREACHABLE, true, "could not resolve host name" },
	{ "name resolution", DB_UNREACHABLE, true, "could not resolve host name" },
	{ "timeout expired", DB_TIMEOUT, true, "connect timed out" },
	{ "timed out", DB_TIMEOUT, true, "connect timed out" },
};

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* A SQLSTATE as libpq prints it in verbose mode: "FATAL:  28P01:  ...". */
static bool find_sqlstate(const char *msg, char out[6])
{
	static const char *const severities[] = { "FATAL:", "ERROR:", "PANIC:" };

	for (size_t i = 0; i < NELEM(severities); i++) {
		for (const char *s = strstr(msg, severities[i]); s;
		     s = strstr(s + 1, severities[i])) {
			const char *c = s + strlen(severities[i]);
			size_t k = 0;

			while (*c == ' ')
				c++;
			while (k < 5 &&
			       (isdigit((unsigned char)c[k]) || isupper((unsigned char)c[k])))
				k++;
			if (k == 5 && c[5] == ':') {
				memcpy(out, c, 5);
				out[5] = '\0';
				return true;
			}
		}
	}
	return false;
}

static const struct rule *sqlstate_rule_for(const char *sqlstate)
{
	if (!sqlstate || strlen(sqlstate) != 5)
		return NULL;
	for (size_t i = 0; i < NELEM(sqlstate_rules); i++) {
		const char *pre = sqlstate_rules[i].match;

		if (strncmp(sqlstate, pre, strlen(pre)) == 0)
			return &sqlstate_rules[i];
	}
	return NULL;
}

bool dberror_sqlstate_transient(const char *sqlstate)
{
	const struct rule *r = sqlstate_rule_for(sqlstate);

	return r && r->transient;
}

/* Lower-case copy with the contents of "…" removed: libpq quotes host, user,
 * database and file names, which must neither leak nor match a rule (a host
 * called ssl.example.com is not a TLS problem). */
static char *scrub(const char *msg)
{
	char *out = xmalloc(strlen(msg) + 1);
	char *o = out;
	bool quoted = false;

	for (const char *m = msg; *m; m++) {
		if (*m == '"')
			quoted = !quoted;
		if (!quoted || *m == '"')
			*o++ = (char)tolower((unsigned char)*m);
	}
	*o = '\0';
	return out;
}

static const struct rule *text_rule_for(const struct rule *rules, size_t n, const char *scrubbed)
{
	for (size_t i = 0; i < n; i++)
		if (strstr(scrubbed, rules[i].match))
			return &rules[i];
	return NULL;
}

/* Neon's proxy says "Control plane request failed" alone for transport
 * failures between it and its control plane; with more after it, the rest
 * is the reason (matched by the rows above, or unknown). */
static bool bare_control_plane_failure(const char *scrubbed)
{
	static const char needle[] = "control plane request failed";
	const char *at = strstr(scrubbed, needle);

	if (!at)
		return false;
	for (at += sizeof needle - 1; *at; at++)
		if (!isspace((unsigned char)*at) && !ispunct((unsigned char)*at))
			return false;
	return true;
}

static void classify_xx000(const char *scrubbed, struct db_error *err)
{
	const struct rule *r = text_rule_for(xx000_rules, NELEM(xx000_rules), scrubbed);

	if (r)
		dberror_set(err, r->category, r->transient, "XX000", r->description);
	else if (bare_control_plane_failure(scrubbed))
		dberror_set(err, DB_UNREACHABLE, true, "XX000", "proxy control plane unreachable");
	else
		dberror_set(err, DB_REJECTED, false, "XX000", "proxy rejected the connection");
}

void dberror_classify_connect(const char *libpq_message, struct db_error *err)
{
	const char *msg = libpq_message ? libpq_message : "";
	char state[6] = "";
	bool has_state = find_sqlstate(msg, state);
	const struct rule *sr = has_state ? sqlstate_rule_for(state) : NULL;

	if (sr) {
		dberror_set(err, sr->category, sr->transient, state, sr->description);
		return;
	}
	char *s = scrub(msg);
	if (strcmp(state, "XX000") == 0) {
		classify_xx000(s, err);
		free(s);
		return;
	}
	const struct rule *mr = text_rule_for(message_rules, NELEM(message_rules), s);
	bool from_server = strstr(s, "fatal:") || strstr(s, "error:");

	free(s);
	if (mr)
		dberror_set(err, mr->category, mr->transient, state, mr->description);
	else if (from_server) /* the server refused, reason unknown */
		dberror_set(err, DB_REJECTED, true, state, "server rejected the connection");
	else
		dberror_set(err, DB_UNREACHABLE, true, state, "could not connect to the server");
}

bool dberror_discards(const struct db_error *err)
{
	return err->category != DB_OK && err->category != DB_QUERY_FAILED;
}

bool dberror_is_held(enum db_category c)
{
	return c == DB_AUTH || c == DB_TLS || c == DB_ENDPOINT || c == DB_QUOTA;
}

int dberror_retry_after_s(enum db_category c)
{
	switch (c) {
	case DB_AUTH:
	case DB_TLS:
	case DB_ENDPOINT:
	case DB_QUOTA: return RETRY_AFTER_OPERATOR_S;
	case DB_RATE_LIMITED: return RETRY_AFTER_RATE_S;
	case DB_CIRCUIT_OPEN: return RETRY_AFTER_BREAKER_S;
	default: return RETRY_AFTER_S;
	}
}
