/* config: the declarative table of every variable (DESIGN.md §2), parsing,
 * validation that reports every problem at once, and redacted printing. */
#ifndef NEONFCGI_CONFIG_H
#define NEONFCGI_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

#include "dbsource.h"
#include "log.h"
#include "problems.h"

enum health_details { HEALTH_DETAILS_FULL, HEALTH_DETAILS_MINIMAL };

struct config {
	char *database_url;                 /* DATABASE_URL (secret: never print unredacted) */
	char *database_url_file;            /* DATABASE_URL_FILE, NULL when unset */
	char *credentials_directory;        /* CREDENTIALS_DIRECTORY, NULL when unset */
	struct dbsource db_source;          /* where database_url came from */
	char *api_host;                     /* API_HOST */
	long api_port;                      /* API_PORT */
	char *api_socket;                   /* API_SOCKET, NULL when unset */
	long api_socket_mode;               /* API_SOCKET_MODE, octal bits */
	char *api_socket_owner;             /* API_SOCKET_OWNER, NULL when unset */
	char *api_socket_group;             /* API_SOCKET_GROUP, NULL when unset */
	char *run_user;                     /* RUN_USER, NULL when unset */
	char *run_group;                    /* RUN_GROUP, NULL when unset */
	char *fcgi_web_server_addrs;        /* FCGI_WEB_SERVER_ADDRS, NULL when unset */
	long workers;                       /* WORKERS */
	long worker_threads;                /* WORKER_THREADS */
	long db_pool_size;                  /* DB_POOL_SIZE */
	long db_max_overflow;               /* DB_MAX_OVERFLOW */
	long db_overflow_idle_ms;           /* DB_OVERFLOW_IDLE_MS */
	long db_pool_timeout_ms;            /* DB_POOL_TIMEOUT_MS */
	bool db_pool_pre_ping;              /* DB_POOL_PRE_PING */
	long db_idle_timeout_s;             /* DB_IDLE_TIMEOUT_S */
	long db_max_lifetime_s;             /* DB_MAX_LIFETIME_S */
	long db_connect_timeout_ms;         /* DB_CONNECT_TIMEOUT_MS */
	long db_retry_attempts;             /* DB_RETRY_ATTEMPTS */
	long db_retry_backoff_ms;           /* DB_RETRY_BACKOFF_MS */
	long db_connection_budget;          /* DB_CONNECTION_BUDGET, -1 when unset */
	long db_failure_hold_ms;            /* DB_FAILURE_HOLD_MS */
	long health_timeout_ms;             /* HEALTH_TIMEOUT_MS */
	enum health_details health_details; /* HEALTH_DETAILS */
	long health_db_max_age_ms;          /* HEALTH_DB_MAX_AGE_MS */
	enum log_level log_level;           /* LOG_LEVEL */
	enum log_format log_format;         /* LOG_FORMAT */
	long max_requests;                  /* MAX_REQUESTS */
	long shutdown_timeout_ms;           /* SHUTDOWN_TIMEOUT_MS */
	bool access_log;                    /* ACCESS_LOG */
	long slow_request_ms;               /* SLOW_REQUEST_MS */
	bool migrate_on_start;              /* MIGRATE_ON_START */
	long db_start_timeout_ms;           /* DB_START_TIMEOUT_MS */
	char *migrations_dir;               /* MIGRATIONS_DIR */
	char *env_file;                     /* ENV_FILE actually read, NULL if none */
	bool db_sslmode_require;            /* derived: sslmode=require (warn at start-up) */
	uid_t run_uid;    /* derived: RUN_USER's uid, (uid_t)-1 without RUN_USER */
	gid_t run_gid;    /* derived: RUN_GROUP's gid, else RUN_USER's primary group */
	uid_t socket_uid; /* derived: API_SOCKET_OWNER, else RUN_USER, else (uid_t)-1: leave it */
	gid_t socket_gid; /* derived: API_SOCKET_GROUP, else run_gid, else (gid_t)-1 */
};

/* Where configuration comes from: a NULL-terminated "KEY=value" environment
 * (main's private copy of environ, which keeps what the real one loses once
 * the configuration is read: procenv) and whether the process was spawned
 * with its listen socket on fd 0 (changes the WORKERS default). */
struct config_source {
	char *const *environ;
	bool spawned;
	long online_cpus;
};

/* An empty configuration, to be filled by config_load; aborts when out of
 * memory. Whoever creates one destroys it (a reload builds a new one and
 * destroys the old one once it is replaced). */
struct config *config_new(void) __attribute__((malloc, returns_nonnull));
/* Wipe the strings (DATABASE_URL holds the password) and free; NULL is fine. */
void config_destroy(struct config *cfg);
/* Fill cfg from the environment and the env file (and the file or systemd
 * credential that holds DATABASE_URL), replacing what it held;
 * 0 if valid, -1 with every problem appended to p (cfg then holds what could
 * be read, defaults for the rest, and is still destroyed by its owner). */
int config_load(struct config *cfg, const struct config_source *src, struct problems *p)
    __attribute__((warn_unused_result));
/* The instance's bound on database connections, WORKERS × (DB_POOL_SIZE +
 * DB_MAX_OVERFLOW) (DESIGN.md §1); the one place it is computed. */
static inline long config_db_bound(const struct config *cfg)
{
	return cfg->workers * (cfg->db_pool_size + cfg->db_max_overflow);
}
/* Print the effective configuration, one KEY=value a line, secrets redacted. */
void config_print(const struct config *cfg, FILE *out);
/* Copy a connection string (URI or key=value) with the password replaced by
 * "****"; always NUL-terminates out. */
void config_redact_url(const char *url, char *out, size_t outlen);
/* "host:port/db" style target for the banner, no user or password. */
void config_db_target(const struct config *cfg, char *out, size_t outlen);
/* The variable table, for --help: name, default and valid range, one a line. */
void config_print_help(FILE *out);

#endif
