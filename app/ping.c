/* ping: a connectivity check for operators, bounded by
 * (DB_RETRY_ATTEMPTS + 1) × DB_CONNECT_TIMEOUT_MS plus the backoffs. */
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

#include "clock.h"
#include "config.h"
#include "pgconn.h"
#include "ping.h"
#include "retry.h"

struct ping_try {
	const struct config *cfg;
	const struct pgconn_params *params;
	struct pgconn_info *info;
	struct db_error *err;
	FILE *out;
	PGconn *conn;
};

/* One connect, and a line for each failure: the operator sees every attempt. */
static enum retry_step connect_once(void *arg, int attempt)
{
	struct ping_try *t = arg;

	t->conn = pgconn_connect(t->params, clock_now_ms() + t->cfg->db_connect_timeout_ms, t->info,
				 t->err);
	if (t->conn != NULL)
		return RETRY_DONE;
	fprintf(t->out, "attempt %d failed: %s (%s)\n", attempt + 1,
		db_category_name(t->err->category), t->err->message);
	return t->err->transient ? RETRY_AGAIN : RETRY_DONE;
}

static PGconn *connect_with_retries(const struct config *cfg, const struct pgconn_params *p,
				    struct pgconn_info *info, struct db_error *err, FILE *out)
{
	struct ping_try t = { .cfg = cfg, .params = p, .info = info, .err = err, .out = out };
	struct retry_policy pol =
	    retry_connect_policy((int)cfg->db_retry_attempts, cfg->db_retry_backoff_ms);
	struct retry_rng rng;
	int64_t deadline = clock_now_ms() +
			   (cfg->db_retry_attempts + 1) * (cfg->db_connect_timeout_ms + pol.cap_ms);

	retry_rng_seed(&rng, (uint64_t)getpid() ^ (uint64_t)clock_now_us());
	(void)retry_run(&pol, &rng, deadline, connect_once, NULL, &t);
	return t.conn;
}

int ping_run(const struct config *cfg, FILE *out)
{
	char perr[256], target[256];
	struct pgconn_info info = { 0 };
	struct db_error err = { 0 };
	int rc = 1;

	config_db_target(cfg, target, sizeof(target));
	struct pgconn_params *p = pgconn_params_new(cfg->database_url, perr, sizeof(perr));
	if (!p) {
		fprintf(out, "ping failed: %s\n", perr);
		return 1;
	}
	PGconn *c = connect_with_retries(cfg, p, &info, &err, out);
	if (!c)
		goto fail;
	int64_t t0 = clock_now_us();
	if (pgconn_exec(c, "SELECT 1", clock_now_ms() + cfg->db_connect_timeout_ms, NULL, &err) < 0)
		goto fail;
	fprintf(out, "ok: %s connect_ms=%.1f select1_ms=%.2f server=%d.%d tls=%s cipher=%s\n",
		target, info.connect_ms, (double)(clock_now_us() - t0) / 1000.0,
		info.server_version / 10000, info.server_version % 10000,
		info.tls_protocol[0] ? info.tls_protocol : "none",
		info.tls_cipher[0] ? info.tls_cipher : "none");
	rc = 0;
fail:
	if (rc)
		fprintf(out, "ping failed: %s (%s)\n", db_category_name(err.category), err.message);
	if (c)
		pgconn_close(c);
	pgconn_params_free(p);
	return rc;
}
