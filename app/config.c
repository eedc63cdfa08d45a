/* config: the variable table of DESIGN.md §2, one loop that parses and
 * validates every row, the rules that span several variables, and printing
 * (secrets through redact). DATABASE_URL's own rules are conninfo's; the
 * listen and account values that need the system are checked by confcheck.
 * Pure: it fills a problem list and never logs, prints to stderr or exits. */
#include "config.h"
#include "confcheck.h"
#include "conninfo.h"
#include "envfile.h"
#include "problems.h"
#include "redact.h"
#include "xalloc.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define DEFAULT_ENV_FILE "./.env"
#define WORKERS_MAX      256

_Static_assert(sizeof(enum log_level) == sizeof(int), "enum rows are stored as int");
_Static_assert(sizeof(enum log_format) == sizeof(int), "enum rows are stored as int");
_Static_assert(sizeof(enum health_details) == sizeof(int), "enum rows are stored as int");

/* ---- the table ---- */

enum var_type { VAR_STRING, VAR_INT, VAR_OCTAL, VAR_BOOL, VAR_ENUM };

enum var_flag {
	VF_REQUIRED = 1 << 0, /* a problem when unset */
	VF_SECRET = 1 << 1,   /* quoted and printed only through redact_conninfo */
	VF_OPTIONAL = 1 << 2, /* may stay unset: NULL string (empty = unset), -1 integer */
	VF_ENV_ONLY = 1 << 3, /* never taken from the env file */
	VF_WORKERS = 1 << 4,  /* default depends on how we were started (DESIGN.md §1) */
	VF_ENV_FILE = 1 << 5, /* ENV_FILE itself: read before the loop */
	VF_SOURCED = 1 << 6,  /* DATABASE_URL: from one of the sources of dbsource */
};

struct load;
struct var;
typedef int (*var_check)(struct load *ld, const struct var *v, const char *val);

struct var {
	const char *name;
	enum var_type type;
	unsigned flags;
	long min, max;            /* VAR_INT, VAR_OCTAL */
	const char *def;          /* parsed like a value; NULL: required, unset or computed */
	size_t off;               /* offsetof(struct config, field) */
	const char *const *words; /* VAR_ENUM: names indexed by value, NULL-terminated */
	var_check check;          /* VAR_STRING: validator, adds its own problem */
	const char *help;         /* what the variable is for; --help */
};

static int check_database_url(struct load *ld, const struct var *v, const char *val);
static int check_api_host(struct load *ld, const struct var *v, const char *val);
static int check_api_socket(struct load *ld, const struct var *v, const char *val);
static int check_web_server_addrs(struct load *ld, const struct var *v, const char *val);
static int check_user(struct load *ld, const struct var *v, const char *val);
static int check_group(struct load *ld, const struct var *v, const char *val);
static int check_not_empty(struct load *ld, const struct var *v, const char *val);

static const char *const health_words[] = { "full", "minimal", NULL };
static const char *const level_words[] = { "debug", "info", "warn", "error", NULL };
static const char *const format_words[] = { "text", "json", NULL };

#define OFF(f) offsetof(struct config, f)
#define STR(n, fl, d, f, chk, h)                                                                   \
	{                                                                                          \
		n, VAR_STRING, fl, 0, 0, d, OFF(f), NULL, chk, h                                   \
	}
#define INT(n, lo, hi, d, f, h)                                                                    \
	{                                                                                          \
		n, VAR_INT, 0, lo, hi, d, OFF(f), NULL, NULL, h                                    \
	}
#define BOOL(n, d, f, h)                                                                           \
	{                                                                                          \
		n, VAR_BOOL, 0, 0, 1, d, OFF(f), NULL, NULL, h                                     \
	}
#define ENUM(n, w, d, f, h)                                                                        \
	{                                                                                          \
		n, VAR_ENUM, 0, 0, 0, d, OFF(f), w, NULL, h                                        \
	}

static const struct var vars[] = {
	STR("ENV_FILE", VF_ENV_ONLY | VF_ENV_FILE, DEFAULT_ENV_FILE, env_file, NULL,
	    "env file read at start-up and on SIGHUP; the environment wins over it; "
	    "set only in the environment; empty: read none"),
	STR("DATABASE_URL", VF_REQUIRED | VF_SECRET | VF_SOURCED, NULL, database_url,
	    check_database_url,
	    CONNINFO_FORMS " naming host, dbname and user; sslmode=require, verify-ca or "
			   "verify-full (a unix-socket host is exempt); options the linked libpq "
			   "knows, with valid values"),
	STR("DATABASE_URL_FILE", VF_OPTIONAL, NULL, database_url_file, NULL,
	    "file whose first line is DATABASE_URL, read at start-up and on SIGHUP; "
	    "not with DATABASE_URL"),
	STR("CREDENTIALS_DIRECTORY", VF_OPTIONAL | VF_ENV_ONLY, NULL, credentials_directory, NULL,
	    "set by systemd (LoadCredential=): with neither DATABASE_URL nor DATABASE_URL_FILE, "
	    "its file " DBSOURCE_CREDENTIAL_NAME " is read as DATABASE_URL_FILE"),
	STR("API_HOST", 0, "127.0.0.1", api_host, check_api_host,
	    "IP address or resolvable name to listen on; a non-loopback address requires "
	    "FCGI_WEB_SERVER_ADDRS"),
	INT("API_PORT", 1024, 65535, "9009", api_port, "TCP port to listen on"),
	STR("API_SOCKET", VF_OPTIONAL, NULL, api_socket, check_api_socket,
	    "absolute path of a unix socket, shorter than 108 bytes; overrides API_HOST/API_PORT"),
	{ "API_SOCKET_MODE", VAR_OCTAL, 0, 0, 0777, "0660", OFF(api_socket_mode), NULL, NULL,
	  "permissions of the unix socket file" },
	STR("API_SOCKET_OWNER", VF_OPTIONAL, NULL, api_socket_owner, check_user,
	    "user (name or number) to own the unix socket file; default: the process's, "
	    "RUN_USER when it drops to one"),
	STR("API_SOCKET_GROUP", VF_OPTIONAL, NULL, api_socket_group, check_group,
	    "group (name or number) of the unix socket file, e.g. the web server's with "
	    "API_SOCKET_MODE=0660; default: the process's, RUN_USER's group when it drops"),
	STR("RUN_USER", VF_OPTIONAL, NULL, run_user, check_user,
	    "started as root: the user (name or number) to switch to once the socket is "
	    "open, before any worker or database connection"),
	STR("RUN_GROUP", VF_OPTIONAL, NULL, run_group, check_group,
	    "with RUN_USER: the group to switch to; default: RUN_USER's primary group"),
	STR("FCGI_WEB_SERVER_ADDRS", VF_OPTIONAL, NULL, fcgi_web_server_addrs,
	    check_web_server_addrs,
	    "comma-separated IP addresses or CIDR blocks (10.0.0.0/8, fd00::/8) of the web servers "
	    "allowed to connect over TCP"),
	{ "WORKERS", VAR_INT, VF_WORKERS, 1, WORKERS_MAX, NULL, OFF(workers), NULL, NULL,
	  "worker processes" },
	/* Defaults from make bench's WORKERS x WORKER_THREADS sweep and its
	 * 4 ms relay: WORKER_THREADS = DB_POOL_SIZE + DB_MAX_OVERFLOW. A
	 * /health/db request holds a thread and a connection for one database
	 * round trip: with fewer threads, connections sit unused at Neon's round
	 * trips (one thread through the relay: 4x less throughput); with more,
	 * threads only queue for a connection and cost CPU per request (T=16:
	 * 83-99 us against 71-81 us for T=4 on 2 CPUs) and memory. WORKERS
	 * defaults to the online CPUs (VF_WORKERS). */
	INT("WORKER_THREADS", 1, 64, "4", worker_threads, "concurrent requests per worker"),
	INT("DB_POOL_SIZE", 1, 100, "2", db_pool_size, "connections a worker keeps"),
	INT("DB_MAX_OVERFLOW", 0, 100, "2", db_max_overflow,
	    "extra connections a worker may open under bursts"),
	INT("DB_OVERFLOW_IDLE_MS", 0, 600000, "5000", db_overflow_idle_ms,
	    "idle time after which a connection above DB_POOL_SIZE is closed"),
	INT("DB_POOL_TIMEOUT_MS", 1, 60000, "1000", db_pool_timeout_ms,
	    "wait for a free connection before failing"),
	BOOL("DB_POOL_PRE_PING", "true", db_pool_pre_ping,
	     "check a pooled connection is alive before handing it out"),
	INT("DB_IDLE_TIMEOUT_S", 0, 86400, "240", db_idle_timeout_s,
	    "close connections idle longer (0 = never)"),
	INT("DB_MAX_LIFETIME_S", 0, 86400, "1800", db_max_lifetime_s,
	    "recycle older connections, with jitter (0 = never)"),
	/* A Neon compute wakes in 0.5-5 s, and an attempt outlives the request
	 * that started it (DESIGN.md §5): long enough for a wake-up. */
	INT("DB_CONNECT_TIMEOUT_MS", 100, 60000, "5000", db_connect_timeout_ms,
	    "deadline of one connection attempt, name resolution included"),
	INT("DB_RETRY_ATTEMPTS", 0, 10, "3", db_retry_attempts,
	    "retries of a transient connect failure"),
	INT("DB_RETRY_BACKOFF_MS", 1, 10000, "100", db_retry_backoff_ms,
	    "base delay of the exponential backoff"),
	{ "DB_CONNECTION_BUDGET", VAR_INT, VF_OPTIONAL, 1, 1000000, NULL, OFF(db_connection_budget),
	  NULL, NULL,
	  "refuse to start when WORKERS * (DB_POOL_SIZE + DB_MAX_OVERFLOW) exceeds it" },
	INT("DB_FAILURE_HOLD_MS", 0, 600000, "5000", db_failure_hold_ms,
	    "after a permanent failure (auth, tls, endpoint, quota), answer with it this long "
	    "without contacting the database"),
	INT("HEALTH_TIMEOUT_MS", 100, 30000, "1500", health_timeout_ms,
	    "total deadline of /health/db, retries included"),
	ENUM("HEALTH_DETAILS", health_words, "full", health_details,
	     "minimal: /health/db reports status only"),
	INT("HEALTH_DB_MAX_AGE_MS", 0, 3600000, "0", health_db_max_age_ms,
	    "a /health/db answer may come from a passing check of any worker this recent "
	    "(0 = only checks begun after the request)"),
	ENUM("LOG_LEVEL", level_words, "info", log_level, "lowest level logged"),
	ENUM("LOG_FORMAT", format_words, "text", log_format,
	     "text: ts level msg key=value; json: one object a line"),
	INT("MAX_REQUESTS", 0, 1000000000, "0", max_requests,
	    "recycle a worker after that many requests (0 = never)"),
	INT("SHUTDOWN_TIMEOUT_MS", 0, 600000, "10000", shutdown_timeout_ms,
	    "time in-flight requests get on a graceful stop"),
	BOOL("ACCESS_LOG", "false", access_log, "one log line per request"),
	INT("SLOW_REQUEST_MS", 1, 600000, "1000", slow_request_ms,
	    "warn about requests slower than this"),
	BOOL("MIGRATE_ON_START", "false", migrate_on_start,
	     "run pending migrations in the master before forking"),
	INT("DB_START_TIMEOUT_MS", 0, 600000, "30000", db_start_timeout_ms,
	    "with MIGRATE_ON_START, how long to wait for a waking database"),
	STR("MIGRATIONS_DIR", 0, "./migrations", migrations_dir, check_not_empty,
	    "directory of NNNN_name.sql files"),
};

#define NVARS (sizeof vars / sizeof vars[0])
_Static_assert(NVARS <= 64, "struct load tracks bad rows in a uint64_t");

/* State of one config_load call. */
struct load {
	struct config *cfg;
	const struct config_source *src;
	const struct envfile *file;
	struct problems *p;
	uint64_t bad; /* bit i: row i was set to an invalid value, or is required and unset */
};

static const struct var *var_find(const char *name, size_t *index)
{
	for (size_t i = 0; i < NVARS; i++) {
		if (strcmp(vars[i].name, name) == 0) {
			*index = i;
			return &vars[i];
		}
	}
	return NULL;
}

static void mark_bad(struct load *ld, const struct var *v)
{
	ld->bad |= UINT64_C(1) << (size_t)(v - vars);
}

static bool is_bad(const struct load *ld, const char *name)
{
	size_t i;

	return var_find(name, &i) != NULL && (ld->bad & (UINT64_C(1) << i)) != 0;
}

static void *field(struct config *cfg, const struct var *v)
{
	return (char *)cfg + v->off;
}

static const void *cfield(const struct config *cfg, const struct var *v)
{
	return (const char *)cfg + v->off;
}

/* ---- value parsers ---- */

/* Strict integer: digits only (a leading '-' in base 10), no blanks, no
 * trailing junk, no overflow, within [min, max]. */
static int parse_long(const char *s, int base, long min, long max, long *n)
{
	char *end;
	long x;

	if (!isdigit((unsigned char)s[0]) &&
	    !(base == 10 && s[0] == '-' && isdigit((unsigned char)s[1])))
		return -1;
	errno = 0;
	x = strtol(s, &end, base);
	if (errno != 0 || *end != '\0' || x < min || x > max)
		return -1;
	*n = x;
	return 0;
}

static int parse_word(const char *const *words, const char *s, long *n)
{
	for (long i = 0; words[i] != NULL; i++) {
		if (strcasecmp(words[i], s) == 0) {
			*n = i;
			return 0;
		}
	}
	return -1;
}

static int parse_bool(const char *s, long *n)
{
	static const char *const yes[] = { "1", "true", "yes", "on", NULL };
	static const char *const no[] = { "0", "false", "no", "off", NULL };
	long unused;

	if (parse_word(yes, s, &unused) == 0)
		*n = 1;
	else if (parse_word(no, s, &unused) == 0)
		*n = 0;
	else
		return -1;
	return 0;
}

static int parse_scalar(const struct var *v, const char *s, long *n)
{
	switch (v->type) {
	case VAR_INT: return parse_long(s, 10, v->min, v->max, n);
	case VAR_OCTAL: return parse_long(s, 8, v->min, v->max, n);
	case VAR_BOOL: return parse_bool(s, n);
	case VAR_ENUM: return parse_word(v->words, s, n);
	case VAR_STRING: break;
	}
	return -1;
}

static void store_scalar(struct config *cfg, const struct var *v, long n)
{
	if (v->type == VAR_BOOL)
		*(bool *)field(cfg, v) = n != 0;
	else if (v->type == VAR_ENUM)
		*(int *)field(cfg, v) = (int)n;
	else
		*(long *)field(cfg, v) = n;
}

/* ---- quoting values in problem lines ---- */

/* The value as it may appear in a problem line: secrets only redacted. */
static void quote_value(const struct var *v, const char *val, char *buf, size_t len)
{
	if (v->flags & VF_SECRET)
		conninfo_quote(val, buf, len);
	else
		problems_quote(val, buf, len);
}

static void join_words(const char *const *words, const char *sep, char *buf, size_t len)
{
	size_t o = 0;

	buf[0] = '\0';
	for (size_t i = 0; words[i] != NULL && o < len; i++)
		o += (size_t)snprintf(buf + o, len - o, "%s%s", i ? sep : "", words[i]);
}

/* "an integer between 1 and 256" etc.: what is valid for a scalar row. */
static void describe_valid(const struct var *v, char *buf, size_t len)
{
	char words[128];

	switch (v->type) {
	case VAR_INT: snprintf(buf, len, "an integer between %ld and %ld", v->min, v->max); break;
	case VAR_OCTAL:
		snprintf(buf, len, "octal permission bits between %04lo and %04lo", v->min, v->max);
		break;
	case VAR_BOOL: snprintf(buf, len, "a boolean (1/0, true/false, yes/no, on/off)"); break;
	case VAR_ENUM:
		join_words(v->words, ", ", words, sizeof words);
		snprintf(buf, len, "one of %s", words);
		break;
	case VAR_STRING: buf[0] = '\0'; break;
	}
}

static void report_invalid(struct load *ld, const struct var *v, const char *val)
{
	char q[PROBLEMS_QUOTE_BUF], valid[256];

	quote_value(v, val, q, sizeof q);
	describe_valid(v, valid, sizeof valid);
	problems_add(ld->p, "%s=\"%s\": must be %s", v->name, q, valid);
}

static void report_required(struct load *ld, const struct var *v)
{
	/* DATABASE_URL, the one required row, is secret: its short form list is
	 * what the operator needs here, not the whole help text. */
	problems_add(ld->p, "%s: required (%s)", v->name,
		     (v->flags & VF_SECRET) ? CONNINFO_FORMS : v->help);
}

/* val is not empty (dbsource reads "" as unset). A value read from a file
 * is never quoted, not even redacted: the file may hold anything, a bare
 * password included. */
static int check_database_url(struct load *ld, const struct var *v, const char *val)
{
	struct problems found = { 0 };
	int rc;

	(void)v;
	if (!dbsource_from_file(&ld->cfg->db_source))
		return conninfo_check(val, ld->p, &ld->cfg->db_sslmode_require);
	rc = conninfo_check(val, &found, &ld->cfg->db_sslmode_require);
	dbsource_relabel(&ld->cfg->db_source, val, &found, ld->p);
	problems_free(&found);
	return rc;
}

/* ---- rows checked by confcheck ---- */

static int check_api_host(struct load *ld, const struct var *v, const char *val)
{
	return confcheck_api_host(v->name, val, ld->p);
}

static int check_api_socket(struct load *ld, const struct var *v, const char *val)
{
	return confcheck_api_socket(v->name, val, ld->p);
}

static int check_web_server_addrs(struct load *ld, const struct var *v, const char *val)
{
	return confcheck_web_server_addrs(v->name, val, ld->p);
}

static int check_user(struct load *ld, const struct var *v, const char *val)
{
	return confcheck_user(v->name, val, ld->p);
}

static int check_group(struct load *ld, const struct var *v, const char *val)
{
	return confcheck_group(v->name, val, ld->p);
}

/* RUN_USER's ids, then the socket's, which default to them. */
static void derive_ids(struct load *ld)
{
	struct config *c = ld->cfg;

	confcheck_run_ids(c->run_user, is_bad(ld, "RUN_USER"), c->run_group,
			  is_bad(ld, "RUN_GROUP"), &c->run_uid, &c->run_gid, ld->p);
	c->socket_uid = c->run_uid;
	c->socket_gid = c->run_gid;
	confcheck_socket_ids(c->api_socket_owner, is_bad(ld, "API_SOCKET_OWNER"),
			     c->api_socket_group, is_bad(ld, "API_SOCKET_GROUP"), &c->socket_uid,
			     &c->socket_gid);
}

static int check_not_empty(struct load *ld, const struct var *v, const char *val)
{
	if (*val != '\0')
		return 0;
	problems_add(ld->p, "%s=\"\": must not be empty (%s)", v->name, v->help);
	return -1;
}

/* ---- loading ---- */

static const char *env_get(char *const *env, const char *name)
{
	size_t n = strlen(name);

	for (; env != NULL && *env != NULL; env++)
		if (strncmp(*env, name, n) == 0 && (*env)[n] == '=')
			return *env + n + 1;
	return NULL;
}

/* python-decouple order: the real environment first, then the file;
 * *in_file says which gave the value. */
static const char *lookup_from(const struct load *ld, const struct var *v, bool *in_file)
{
	const char *val = env_get(ld->src->environ, v->name);

	*in_file = false;
	if (val == NULL && !(v->flags & VF_ENV_ONLY)) {
		val = envfile_get(ld->file, v->name);
		*in_file = val != NULL;
	}
	return val;
}

static const char *lookup(const struct load *ld, const struct var *v)
{
	bool in_file;

	return lookup_from(ld, v, &in_file);
}

/* DESIGN.md §1: spawned on fd 0 (lighttpd, mod_fcgid) the spawner decides
 * the process count, PHP_FCGI_CHILDREN or 1; standalone, one per CPU. */
static long default_workers(const struct config_source *src)
{
	const char *children;
	long n;

	if (src->spawned) {
		children = env_get(src->environ, "PHP_FCGI_CHILDREN");
		if (children != NULL && parse_long(children, 10, 1, WORKERS_MAX, &n) == 0)
			return n;
		return 1;
	}
	n = src->online_cpus;
	return n < 1 ? 1 : n > WORKERS_MAX ? WORKERS_MAX : n;
}

static void set_string(struct config *cfg, const struct var *v, const char *val)
{
	char **slot = field(cfg, v);

	xfree_wiped(*slot);
	*slot = val != NULL ? xstrdup(val) : NULL;
}

static void apply_default(struct load *ld, const struct var *v)
{
	long n = v->min;

	if (v->flags & VF_REQUIRED) {
		report_required(ld, v);
		mark_bad(ld, v);
	} else if (v->type == VAR_STRING) {
		set_string(ld->cfg, v, v->def);
	} else if (v->flags & VF_WORKERS) {
		store_scalar(ld->cfg, v, default_workers(ld->src));
	} else if (v->def == NULL) {
		store_scalar(ld->cfg, v, -1);
	} else if (parse_scalar(v, v->def, &n) == 0) {
		store_scalar(ld->cfg, v, n);
	}
}

/* DATABASE_URL, or the file or credential that holds it (dbsource); then
 * PGPASSWORD folded in, once the string as written has passed its checks. */
static void load_database_url(struct load *ld, const struct var *v)
{
	const struct var *file_var;
	struct dbsource_input in = { 0 };
	size_t i;
	char *url;

	in.url = lookup_from(ld, v, &in.url_in_env_file);
	file_var = var_find("DATABASE_URL_FILE", &i);
	if (file_var != NULL)
		in.file = lookup_from(ld, file_var, &in.file_in_env_file);
	in.credentials_dir = env_get(ld->src->environ, "CREDENTIALS_DIRECTORY");
	in.env_file = ld->cfg->env_file;
	if (dbsource_resolve(&in, &ld->cfg->db_source, &url, ld->p) < 0) {
		mark_bad(ld, v);
		return;
	}
	if (url == NULL) {
		apply_default(ld, v); /* required */
		return;
	}
	set_string(ld->cfg, v, url);
	xfree_wiped(url);
	if (check_database_url(ld, v, ld->cfg->database_url) < 0) {
		mark_bad(ld, v);
		return;
	}
	dbsource_add_pgpassword(&ld->cfg->database_url, env_get(ld->src->environ, "PGPASSWORD"),
				&ld->cfg->db_source);
}

static void load_var(struct load *ld, const struct var *v)
{
	const char *val;
	long n;

	if (v->flags & VF_SOURCED) {
		load_database_url(ld, v);
		return;
	}
	val = lookup(ld, v);
	if (val != NULL && *val == '\0' && v->type == VAR_STRING && (v->flags & VF_OPTIONAL))
		val = NULL;
	if (val == NULL) {
		apply_default(ld, v);
	} else if (v->type == VAR_STRING) {
		set_string(ld->cfg, v, val);
		if (v->check != NULL && v->check(ld, v, val) < 0)
			mark_bad(ld, v);
	} else if (parse_scalar(v, val, &n) == 0) {
		store_scalar(ld->cfg, v, n);
	} else {
		report_invalid(ld, v, val);
		mark_bad(ld, v);
		apply_default(ld, v);
	}
}

/* ENV_FILE comes from the environment only. The default file may be absent;
 * an explicitly named one must be readable. */
static void load_env_file(struct load *ld, struct envfile *ef)
{
	const char *path = env_get(ld->src->environ, "ENV_FILE");

	if (path != NULL && *path == '\0')
		return;
	if (path == NULL) {
		path = DEFAULT_ENV_FILE;
		if (access(path, F_OK) != 0 && errno == ENOENT)
			return;
	}
	ld->cfg->env_file = xstrdup(path);
	(void)envfile_read(path, ef, ld->p); /* its problems are in ld->p */
}

static void check_budget(struct load *ld)
{
	const struct config *c = ld->cfg;
	long need;

	if (c->db_connection_budget < 0 || is_bad(ld, "WORKERS") || is_bad(ld, "DB_POOL_SIZE") ||
	    is_bad(ld, "DB_MAX_OVERFLOW"))
		return;
	need = config_db_bound(c);
	if (need <= c->db_connection_budget)
		return;
	problems_add(ld->p,
		     "DB_CONNECTION_BUDGET=\"%ld\": WORKERS * (DB_POOL_SIZE + "
		     "DB_MAX_OVERFLOW) = %ld * (%ld + %ld) = %ld connections exceeds the budget "
		     "of %ld; lower WORKERS, DB_POOL_SIZE or DB_MAX_OVERFLOW, or raise the budget",
		     c->db_connection_budget, c->workers, c->db_pool_size, c->db_max_overflow, need,
		     c->db_connection_budget);
}

/* Listening beyond loopback over TCP needs a peer list (confcheck says why). */
static void check_exposure(struct load *ld)
{
	const struct config *c = ld->cfg;

	if (c->api_socket != NULL || ld->src->spawned || c->fcgi_web_server_addrs != NULL ||
	    is_bad(ld, "API_HOST") || is_bad(ld, "API_SOCKET"))
		return;
	confcheck_exposure(c->api_host, ld->p);
}

/* Every string row is owned by the config and may hold a secret. */
static void release_strings(struct config *cfg)
{
	for (size_t i = 0; i < NVARS; i++) {
		if (vars[i].type == VAR_STRING) {
			char **slot = field(cfg, &vars[i]);

			xfree_wiped(*slot);
			*slot = NULL;
		}
	}
}

struct config *config_new(void)
{
	return xcalloc(1, sizeof(struct config));
}

void config_destroy(struct config *cfg)
{
	if (cfg == NULL)
		return;
	release_strings(cfg);
	dbsource_clear(&cfg->db_source);
	free(cfg);
}

int config_load(struct config *cfg, const struct config_source *src, struct problems *p)
{
	struct envfile ef = { NULL, 0 };
	struct load ld = { cfg, src, &ef, p, 0 };
	size_t before = p->n;

	release_strings(cfg);
	dbsource_clear(&cfg->db_source);
	memset(cfg, 0, sizeof *cfg);
	load_env_file(&ld, &ef);
	for (size_t i = 0; i < NVARS; i++)
		if (!(vars[i].flags & VF_ENV_FILE))
			load_var(&ld, &vars[i]);
	check_budget(&ld);
	check_exposure(&ld);
	derive_ids(&ld);
	envfile_free(&ef);
	return p->n == before ? 0 : -1;
}

/* ---- printing ---- */

static void print_string(const struct var *v, const char *val, FILE *out)
{
	char *buf;
	size_t len;

	if (val == NULL || !(v->flags & VF_SECRET)) {
		fprintf(out, "%s=%s\n", v->name, val ? val : "");
		return;
	}
	len = strlen(val) * 3 + 16; /* room for every "****" */
	buf = xcalloc(1, len);
	redact_conninfo(val, buf, len);
	fprintf(out, "%s=%s\n", v->name, buf);
	free(buf);
}

static const char *word_at(const char *const *words, int n)
{
	for (int i = 0; words[i] != NULL; i++)
		if (i == n)
			return words[i];
	return "?";
}

static void print_var(const struct config *cfg, const struct var *v, FILE *out)
{
	const void *f = cfield(cfg, v);
	long n;

	switch (v->type) {
	case VAR_STRING: print_string(v, *(char *const *)f, out); break;
	case VAR_INT:
		n = *(const long *)f;
		if (n < 0 && (v->flags & VF_OPTIONAL))
			fprintf(out, "%s=\n", v->name);
		else
			fprintf(out, "%s=%ld\n", v->name, n);
		break;
	case VAR_OCTAL: fprintf(out, "%s=%04lo\n", v->name, (unsigned long)*(const long *)f); break;
	case VAR_BOOL: fprintf(out, "%s=%s\n", v->name, *(const bool *)f ? "true" : "false"); break;
	case VAR_ENUM: fprintf(out, "%s=%s\n", v->name, word_at(v->words, *(const int *)f)); break;
	}
}

/* Where DATABASE_URL came from, as a comment line after it: the line
 * above stays KEY=value. */
static void print_source(const struct config *cfg, FILE *out)
{
	char from[PATH_MAX + 128];

	dbsource_describe(&cfg->db_source, cfg->env_file, from, sizeof from);
	fprintf(out, "# DATABASE_URL from %s\n", from);
}

void config_print(const struct config *cfg, FILE *out)
{
	for (size_t i = 0; i < NVARS; i++) {
		print_var(cfg, &vars[i], out);
		if ((vars[i].flags & VF_SOURCED) && cfg->db_source.origin != DBSOURCE_NONE)
			print_source(cfg, out);
	}
}

void config_print_help(FILE *out)
{
	char valid[256];
	const char *def;

	for (size_t i = 0; i < NVARS; i++) {
		const struct var *v = &vars[i];

		def = v->def                   ? v->def
		      : v->flags & VF_REQUIRED ? "required"
		      : v->flags & VF_WORKERS  ? "online CPUs"
					       : "unset";
		describe_valid(v, valid, sizeof valid);
		fprintf(out, "  %-22s %-13s %s%s%s\n", v->name, def, valid, valid[0] ? "; " : "",
			v->help);
	}
	fprintf(out, "  (WORKERS default: online CPUs; spawned on fd 0: PHP_FCGI_CHILDREN or 1)\n");
}

/* The banner's and the tools' view of DATABASE_URL. */
void config_db_target(const struct config *cfg, char *out, size_t outlen)
{
	conninfo_target(cfg->database_url, out, outlen);
}
