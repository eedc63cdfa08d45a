/* main: command line, configuration, start-up order (DESIGN.md §3). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include <fcgi_config.h>
#include <jansson.h>
#include <libpq-fe.h>

#include "clock.h"
#include "config.h"
#include "conninfo.h"
#include "dbsource.h"
#include "doctor.h"
#include "listen.h"
#include "log.h"
#include "master.h"
#include "migrate.h"
#include "ping.h"
#include "procenv.h"
#include "privdrop.h"
#include "sdnotify.h"
#include "solo.h"

extern char **environ;

static void print_version(FILE *out)
{
	int pq = PQlibVersion();

	fprintf(out, "neonfcgi %s (libpq %d.%d, libfcgi headers %s, jansson %s)\n",
		NEONFCGI_VERSION, pq / 10000, pq % 10000, VERSION, jansson_version_str());
}

static void print_usage(FILE *out)
{
	fputs("usage: neonfcgi [serve]            run master + workers (default)\n"
	      "       neonfcgi check-config       validate configuration, print it redacted\n"
	      "       neonfcgi ping               one connection + SELECT 1: latency, server, TLS\n"
	      "       neonfcgi migrate [--dry-run]   apply pending migrations (MIGRATIONS_DIR)\n"
	      "       neonfcgi migrate status     list applied and pending migrations\n"
	      "       neonfcgi doctor             diagnose the database set-up, with fixes\n"
	      "       neonfcgi --version | --help\n"
	      "\nExit codes: 0 ok, 1 runtime failure, 64 usage error, 69 database unavailable\n"
	      "(MIGRATE_ON_START past DB_START_TIMEOUT_MS), 78 configuration error.\n"
	      "\nConfiguration comes from the environment and the env file (ENV_FILE,\n"
	      "default ./.env); the environment wins. DATABASE_URL may instead come from\n"
	      "a file (DATABASE_URL_FILE) or a systemd credential. Variables:\n\n",
	      out);
	config_print_help(out);
}

/* Load the configuration or report every problem; 0 or EX_CONFIG. */
static int load_config(struct config *cfg, const struct config_source *src)
{
	struct problems p = { 0 };

	if (config_load(cfg, src, &p) == 0)
		return EX_OK;
	for (size_t i = 0; i < p.n; i++)
		fprintf(stderr, "neonfcgi: configuration error: %s\n", p.lines[i]);
	fprintf(stderr, "neonfcgi: %zu configuration problem%s; not starting\n", p.n,
		p.n == 1 ? "" : "s");
	problems_free(&p);
	return EX_CONFIG;
}

/* The CA file that verifies the server, as the banner and check-config show
 * it: "none" when sslmode does not verify. */
static const char *ca_file_shown(const struct config *cfg, struct conninfo_ca *ca)
{
	if (conninfo_ca(cfg->database_url, ca) < 0 || !ca->verify || ca->file[0] == '\0')
		return "none";
	return ca->file;
}

static void banner(const struct config *cfg, const struct listener *l)
{
	char target[256], warning[512];
	struct conninfo_ca ca;
	int pq = PQlibVersion();

	config_db_target(cfg, target, sizeof(target));
	log_info("neonfcgi starting version=\"%s\" libpq=\"%d.%d\" jansson=\"%s\" listen=\"%s\" "
		 "workers=%ld "
		 "threads=%ld pool_size=%ld max_overflow=%ld max_db_connections=%ld db=\"%s\" "
		 "tls_ca=\"%s\"",
		 NEONFCGI_VERSION, pq / 10000, pq % 10000, jansson_version_str(), l->address,
		 cfg->workers, cfg->worker_threads, cfg->db_pool_size, cfg->db_max_overflow,
		 config_db_bound(cfg), target, ca_file_shown(cfg, &ca));
	if (conninfo_tls_warning(cfg->database_url, warning, sizeof(warning)))
		log_warnx("%s", warning);
}

/* check-config: the effective configuration, then as comments (the output
 * still reads as an env file) how the server will be verified. */
static int check_config(const struct config *cfg)
{
	char warning[512];
	struct conninfo_ca ca;
	const char *file = ca_file_shown(cfg, &ca);

	config_print(cfg, stdout);
	if (ca.verify)
		printf("# TLS: the server's certificate is verified with %s (%s)\n", file,
		       ca.source ? ca.source : "none");
	if (conninfo_tls_warning(cfg->database_url, warning, sizeof(warning)))
		printf("# warning: %s\n", warning);
	return EX_OK;
}

/* Migrations run after the privilege drop (DESIGN.md §1: no database
 * connection as root) and before the socket listens: it is bound, so a web
 * server's connections are refused at once rather than queued on a backlog
 * nobody accepts from while we wait up to DB_START_TIMEOUT_MS. */
static int migrate_before_serving(struct config *cfg)
{
	return cfg->migrate_on_start ? migrate_on_start(cfg) : 0;
}

/* Under systemd with Type=notify, report readiness once the socket listens
 * (connections queue in its backlog until a worker accepts them). Without
 * NOTIFY_SOCKET this sends nothing. */
static void notify_ready(const struct listener *l)
{
	char state[256], err[256];

	snprintf(state, sizeof(state), "READY=1\nSTATUS=listening on %s", l->address);
	if (sdnotify_send(state, err, sizeof(err)) < 0)
		log_warnx("cannot notify systemd: %s", err);
}

/* The env file usually holds DATABASE_URL with its password;
 * DATABASE_URL_FILE always does. (systemd makes credentials 0400.) */
static void warn_secret_file_modes(const struct config *cfg)
{
	const char *url_file = cfg->db_source.origin == DBSOURCE_FILE ? cfg->db_source.path : NULL;
	struct stat st;

	if (cfg->env_file != NULL && stat(cfg->env_file, &st) == 0 && (st.st_mode & 077) != 0)
		log_warnx("env file is readable by group or others; it may hold the database "
			  "password: chmod 600 it file=\"%s\" mode=%04o",
			  cfg->env_file, (unsigned)(st.st_mode & 07777));
	if (url_file != NULL && stat(url_file, &st) == 0 && (st.st_mode & 077) != 0)
		log_warnx("DATABASE_URL_FILE is readable by group or others; it holds the "
			  "database password: chmod 600 it file=\"%s\" mode=%04o",
			  url_file, (unsigned)(st.st_mode & 07777));
}

/* RUN_USER: drop root now that the socket is open, or say why not. */
static int drop_privileges(const struct config *cfg, const struct listener *l)
{
	enum privdrop_result how;
	char err[512];

	if (privdrop_apply(cfg, &how, err, sizeof(err)) < 0) {
		log_errorx("cannot switch to RUN_USER: %s", err);
		return EXIT_FAILURE;
	}
	switch (how) {
	case PRIVDROP_STAYED_ROOT:
		log_warnx("serving as root: set RUN_USER (and API_SOCKET_GROUP) to run as an "
			  "unprivileged user once the socket is open");
		break;
	case PRIVDROP_DROPPED:
		log_info("switched to RUN_USER user=\"%s\" uid=%lu gid=%lu", cfg->run_user,
			 (unsigned long)cfg->run_uid, (unsigned long)cfg->run_gid);
		if (listen_check_removable(l, err, sizeof(err)) < 0)
			log_warnx("RUN_USER cannot remove the socket file on stop: %s; make the "
				  "directory writable by it (systemd: RuntimeDirectory=), or the "
				  "next start replaces the stale file",
				  err);
		break;
	case PRIVDROP_ROOT_ON_PURPOSE:
	case PRIVDROP_NOT_ROOT: break;
	}
	return 0;
}

/* Every step up to serving, each undone on failure (the socket file too). */
static int prepare(struct config *cfg, struct listener *l)
{
	char err[512];
	int rc;

	if (privdrop_check(cfg, err, sizeof(err)) < 0) {
		log_errorx("configuration error: %s", err);
		return EX_CONFIG;
	}
	if (listen_open(cfg, l, err, sizeof(err)) < 0) {
		log_errorx("cannot listen: %s", err);
		return EXIT_FAILURE;
	}
	rc = drop_privileges(cfg, l);
	if (rc == 0)
		rc = migrate_before_serving(cfg);
	if (rc == 0 && listen_start(l, err, sizeof(err)) < 0) {
		log_errorx("cannot listen: %s", err);
		rc = EXIT_FAILURE;
	}
	if (rc != 0)
		(void)listen_close(l, true);
	return rc;
}

/* *cfg stays main's: a reload in the master replaces it. */
static int serve(struct config **cfg, const struct config_source *src)
{
	struct listener l;
	int rc;

	log_init((*cfg)->log_level, (*cfg)->log_format);
	warn_secret_file_modes(*cfg);
	rc = prepare(*cfg, &l);
	if (rc != 0)
		return rc;
	banner(*cfg, &l);
	notify_ready(&l);
	if (solo_wanted(*cfg, src))
		return solo_run(*cfg, &l);
	return master_run(cfg, src, &l);
}

enum command {
	CMD_SERVE,
	CMD_CHECK_CONFIG,
	CMD_PING,
	CMD_MIGRATE,
	CMD_DOCTOR,
	CMD_HELP,
	CMD_VERSION
};

struct command_line {
	enum command cmd;
	enum migrate_mode migrate_mode;
};

static const struct {
	const char *name;
	enum command cmd;
} commands[] = {
	{ "serve", CMD_SERVE },       { "check-config", CMD_CHECK_CONFIG },
	{ "ping", CMD_PING },         { "migrate", CMD_MIGRATE },
	{ "doctor", CMD_DOCTOR },     { "--help", CMD_HELP },
	{ "-h", CMD_HELP },           { "help", CMD_HELP },
	{ "--version", CMD_VERSION }, { "-V", CMD_VERSION },
};

/* `migrate`, `migrate --dry-run`, `migrate status`. */
static int parse_migrate_args(int argc, char **argv, enum migrate_mode *mode)
{
	if (argc == 2)
		*mode = MIGRATE_RUN;
	else if (argc == 3 && !strcmp(argv[2], "--dry-run"))
		*mode = MIGRATE_DRY_RUN;
	else if (argc == 3 && !strcmp(argv[2], "status"))
		*mode = MIGRATE_STATUS;
	else
		return -1;
	return 0;
}

/* 0, or EX_USAGE after saying what is wrong. */
static int parse_args(int argc, char **argv, struct command_line *cl)
{
	const char *name = argc > 1 ? argv[1] : "serve";
	size_t i = 0;

	while (i < sizeof(commands) / sizeof(commands[0]) && strcmp(commands[i].name, name) != 0)
		i++;
	if (i == sizeof(commands) / sizeof(commands[0])) {
		fprintf(stderr, "neonfcgi: unknown command \"%s\"\n", name);
		print_usage(stderr);
		return EX_USAGE;
	}
	cl->cmd = commands[i].cmd;
	if (cl->cmd == CMD_MIGRATE && parse_migrate_args(argc, argv, &cl->migrate_mode) < 0) {
		fprintf(stderr, "neonfcgi: usage: neonfcgi migrate [--dry-run] | migrate status\n");
		return EX_USAGE;
	}
	if (cl->cmd != CMD_MIGRATE && argc > 2) {
		fprintf(stderr, "neonfcgi: %s takes no arguments\n", name);
		return EX_USAGE;
	}
	return 0;
}

/* Commands other than serve. */
static int run_tool(const struct command_line *cl, const struct config *cfg)
{
	switch (cl->cmd) {
	case CMD_CHECK_CONFIG: return check_config(cfg);
	case CMD_PING: log_init(cfg->log_level, cfg->log_format); return ping_run(cfg, stdout);
	case CMD_DOCTOR: log_init(cfg->log_level, cfg->log_format); return doctor_run(cfg, stdout);
	case CMD_MIGRATE:
		log_init(cfg->log_level, cfg->log_format);
		return migrate_command(cfg, cl->migrate_mode);
	default: return EX_USAGE;
	}
}

int main(int argc, char **argv)
{
	struct command_line cl = { 0 };

	if (parse_args(argc, argv, &cl) != 0)
		return EX_USAGE;
	if (cl.cmd == CMD_HELP || cl.cmd == CMD_VERSION) {
		cl.cmd == CMD_HELP ? print_usage(stdout) : print_version(stdout);
		return EX_OK;
	}
	/* The configuration is read from a private copy of the environment
	 * (a SIGHUP reads it again: the environment still wins over the env
	 * file), so the password can leave the real one before any worker
	 * or tool starts (DESIGN.md §5). */
	struct procenv *env = procenv_snapshot(environ);
	struct config_source src = { .environ = procenv_vars(env),
				     .spawned = listen_fd0_is_listener(),
				     .online_cpus = sysconf(_SC_NPROCESSORS_ONLN) };
	struct config *cfg = config_new();
	int rc = load_config(cfg, &src);
	(void)procenv_scrub_all(env, dbsource_secret_vars);
	if (rc == EX_OK)
		rc = cl.cmd == CMD_SERVE ? serve(&cfg, &src) : run_tool(&cl, cfg);
	config_destroy(cfg);
	procenv_free(env);
	return rc;
}
