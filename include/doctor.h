/* doctor: `neonfcgi doctor` (DESIGN.md §3): connect as the server does and
 * report, one finding a line (ok, warn or fail, and what to change), whether
 * the set-up fits the database. Probing (doctor_run) is kept apart from the
 * findings (doctor_report), which are pure and unit-tested. */
#ifndef NEONFCGI_DOCTOR_H
#define NEONFCGI_DOCTOR_H

#include <limits.h>
#include <stdbool.h>
#include <stdio.h>

struct config;

/* What probing found; strings hold no secret (no password, no user). */
struct doctor_facts {
	int libpq_version; /* PQlibVersion() */
	/* DATABASE_URL */
	char host[256];           /* first host, "" for a unix socket */
	char sslmode[32];         /* as given, or libpq's default */
	char channel_binding[16]; /* as given, "" when unset */
	bool verify;              /* verify-ca or verify-full */
	char ca_file[PATH_MAX];   /* the file that verifies the server, or "" */
	char ca_source[32];       /* where it came from (sslrootcert, SSL_CERT_FILE…) */
	/* the connections */
	bool connected;
	char error[300];         /* category and our description when not connected */
	double cold_ms, warm_ms; /* warm_ms < 0: second connect failed */
	int server_version;      /* server_version_num */
	char tls_protocol[32], tls_cipher[64];
	bool pid_differs;               /* BackendKeyData pid != pg_backend_pid(): a pooler */
	long max_connections, reserved; /* -1 when unknown */
	/* the configuration */
	long bound, budget, idle_timeout_s; /* budget -1: unset */
};

/* A Neon host name: a first label "ep-…" or a neon.tech domain; pooler when
 * that label ends in "-pooler". */
bool doctor_neon_host(const char *host, bool *pooler);
/* Print the findings for f, one a line; 1 when one is a fail, else 0. */
int doctor_report(const struct doctor_facts *f, FILE *out);
/* Probe the database cfg names and report on out; 0 or 1. */
int doctor_run(const struct config *cfg, FILE *out);

#endif
