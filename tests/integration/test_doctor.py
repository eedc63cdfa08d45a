"""`neonfcgi doctor` (issue 14, DESIGN.md §3) against each kind of target:
the local PostgreSQL, PgBouncer in transaction mode, and the Neon-proxy
fixture; and an instance whose bound exceeds the server's max_connections.
Every finding is one line `ok|warn|fail topic: text`; no secret is printed."""

import re

import neonproxy  # noqa: F401  (registers the `neon_proxy` fixture)
import pgbouncer  # noqa: F401  (registers the `pgbouncer` fixture)

LINE = re.compile(r"(ok|warn|fail) +[a-z_]+: \S.*")


def findings(res):
    lines = res.stdout.splitlines()
    assert lines, f"doctor printed nothing\n{res.describe()}"
    for ln in lines:
        assert LINE.fullmatch(ln), f"not a finding line: {ln!r}\n{res.describe()}"
    out = {}
    for ln in lines:
        level, rest = ln.split(None, 1)
        topic, _, text = rest.partition(": ")
        out.setdefault(topic, []).append((level, text))
    return out


def one(f, topic):
    assert topic in f and len(f[topic]) == 1, f"finding {topic}: {f.get(topic)}"
    return f[topic][0]


def test_doctor_local_postgres(neonfcgi, dev_db):
    res = neonfcgi.run("doctor", WORKERS=2).expect(0, dev_db.password)
    f = findings(res)
    assert re.fullmatch(r"\d+\.\d+ linked.*", one(f, "libpq")[1])
    assert one(f, "server")[1].startswith("PostgreSQL ")
    level, text = one(f, "tls")
    assert level == "ok" and "TLS" in text, text
    assert one(f, "ca")[0] == "warn" and "verify-full" in one(f, "ca")[1]  # sslmode=require
    assert one(f, "pooler") == ("ok", "none detected: connected to PostgreSQL directly")
    assert re.fullmatch(r"cold [\d.]+ ms, warm [\d.]+ ms.*", one(f, "connect")[1])
    level, text = one(f, "capacity")
    assert level == "ok" and text.startswith("bound 8 <= "), text
    assert one(f, "idle_timeout")[0] == "ok"
    assert not any(lv == "fail" for v in f.values() for lv, _ in v)


def test_doctor_verify_full_names_the_ca_file(neonfcgi, dev_db):
    res = neonfcgi.run("doctor", DATABASE_URL=dev_db.url_verify_full).expect(0, dev_db.password)
    level, text = one(findings(res), "ca")
    assert level == "ok" and dev_db.ca in text and "sslrootcert" in text, text


def test_doctor_bound_above_max_connections_fails(neonfcgi, dev_db):
    res = neonfcgi.run("doctor", WORKERS=100, DB_POOL_SIZE=50, DB_MAX_OVERFLOW=0)
    res.expect(1, dev_db.password)
    level, text = one(findings(res), "capacity")
    m = re.search(r"max_connections (\d+)", text)
    assert level == "fail" and "5000" in text and m, text
    assert int(m.group(1)) < 5000


def test_doctor_pgbouncer_transaction_mode(neonfcgi, pgbouncer, dev_db):
    assert pgbouncer.pool_mode == "transaction"
    res = neonfcgi.run("doctor", DATABASE_URL=pgbouncer.url()).expect(0, dev_db.password)
    f = findings(res)
    level, text = one(f, "pooler")
    assert level == "ok" and "PgBouncer" in text and "not the server's" in text, text
    assert one(f, "capacity")[0] == "ok" and "pooler" in one(f, "capacity")[1]


def test_doctor_neon_proxy_fixture(neonfcgi, neon_proxy, dev_db):
    url = neon_proxy.url("ep-quiet-lake-123456", channel_binding="require")
    # A bound of 120 through a direct Neon host: a warning, and (the test
    # server allows 100) the capacity fail.
    res = neonfcgi.run("doctor", DATABASE_URL=url, WORKERS=30, DB_POOL_SIZE=2,
                       DB_MAX_OVERFLOW=2, DB_IDLE_TIMEOUT_S=600).expect(1, dev_db.password)
    f = findings(res)
    assert one(f, "capacity")[0] == "fail" and "120" in one(f, "capacity")[1]
    level, text = one(f, "pooler")
    assert level == "warn" and "direct Neon host" in text and "120" in text, text
    assert one(f, "channel_binding") == ("ok", "required: SCRAM is bound to the TLS channel")
    assert one(f, "ca")[0] == "ok" and neon_proxy.ca_file in one(f, "ca")[1]
    assert one(f, "idle_timeout")[0] == "warn"
    pooled = neonfcgi.run("doctor", DATABASE_URL=neon_proxy.url("ep-quiet-lake-123456",
                                                                 pooler=True))
    level, text = one(findings(pooled.expect(0, dev_db.password)), "pooler")
    assert level == "ok" and "-pooler" in text, text


def test_doctor_unreachable_fails_and_config_errors_exit_78(neonfcgi, dev_db):
    res = neonfcgi.run("doctor", DATABASE_URL=dev_db.url_variant(host="127.0.0.1", port=1),
                       DB_CONNECT_TIMEOUT_MS=1000).expect(1, dev_db.password)
    assert one(findings(res), "connect")[0] == "fail"
    neonfcgi.run("doctor", WORKERS="0").expect(78, dev_db.password)
    neonfcgi.run("doctor", "extra").expect(64, dev_db.password)
