"""TLS set-up anywhere (issue 13 item 7; DESIGN.md §5): check-config checks
every connection option against the linked libpq and names the libpq version
an unknown one needs; enumerated values are checked; the CA bundle comes
from SSL_CERT_FILE (then OpenSSL's default file, then the distribution
paths) when DATABASE_URL names none; sslrootcert=system means that bundle on
libpq 15 too; sslmode=require logs one warning at start-up.

Every URL keeps the dev database's real password, so a leak is caught."""

import re

from harness import skip

EX_CONFIG = 78


def linked_libpq(neonfcgi):
    """(major, minor) of the libpq the binary links, from --version."""
    res = neonfcgi.run("--version").expect(0)
    m = re.search(r"libpq (\d+)\.(\d+)", res.stdout)
    assert m, res.describe()
    return int(m.group(1)), int(m.group(2))


def check_config_error(neonfcgi, dev_db, url, **vars):
    """check-config exits 78 without printing the password; its output."""
    res = neonfcgi.run("check-config", DATABASE_URL=url, **vars)
    res.expect(EX_CONFIG, dev_db.password)
    return res.output


def assert_health_db_pass(srv):
    r = srv.get("/health/db")
    assert r.status == 200, f"{r}\n{srv.log()[-3000:]}"
    assert r.json()["status"] == "pass", str(r)


def sslmode_warnings(log):
    return [line for line in log.splitlines()
            if "sslmode=require encrypts but does not verify" in line]


# --------------------------------------------------------------------------
# Options checked against the linked libpq


def test_check_config_sslnegotiation_names_libpq_17(neonfcgi, dev_db):
    major, minor = linked_libpq(neonfcgi)
    if major >= 17:
        skip(f"libpq {major} knows sslnegotiation")
    url = dev_db.url_variant(query={"sslmode": "require", "sslnegotiation": "direct"})
    out = check_config_error(neonfcgi, dev_db, url)
    want = (f'option "sslnegotiation" needs libpq 17 or newer; this build links '
            f'libpq {major}.{minor}')
    assert want in out, out
    assert "DATABASE_URL" in out and "cannot be parsed" not in out, out


def test_check_config_unknown_option_is_named(neonfcgi, dev_db):
    url = dev_db.url_variant(query={"sslmode": "require", "sslnegociation": "direct"})
    out = check_config_error(neonfcgi, dev_db, url)
    assert 'option "sslnegociation" is not a libpq connection option' in out, out


def test_check_config_channel_binding_bogus_exits_78(neonfcgi, dev_db):
    url = dev_db.url_variant(query={"sslmode": "require", "channel_binding": "bogus"})
    out = check_config_error(neonfcgi, dev_db, url)
    assert ('"channel_binding=bogus" is not valid: channel_binding must be disable, '
            'prefer or require') in out, out


def test_check_config_enumerated_values_checked(neonfcgi, dev_db):
    url = dev_db.url_variant(query={"sslmode": "require", "gssencmode": "allow",
                                    "target_session_attrs": "master"})
    out = check_config_error(neonfcgi, dev_db, url)
    assert '"gssencmode=allow" is not valid' in out, out
    assert '"target_session_attrs=master" is not valid' in out, out
    assert "2 configuration problems" in out, out


# --------------------------------------------------------------------------
# The CA bundle and sslrootcert=system


def test_tls_sslrootcert_system_uses_ssl_cert_file(neonfcgi, dev_db):
    """sslrootcert=system with SSL_CERT_FILE=<the dev CA>: libpq 15 alone
    would open a file named "system"; the server is verified with the CA."""
    url = dev_db.url_variant(query={"sslmode": "verify-full", "sslrootcert": "system"})
    res = neonfcgi.run("check-config", DATABASE_URL=url, SSL_CERT_FILE=dev_db.ca)
    res.expect(0, dev_db.password)
    assert (f"# TLS: the server's certificate is verified with {dev_db.ca} "
            f"(SSL_CERT_FILE)") in res.stdout, res.describe()
    with neonfcgi.start(DATABASE_URL=url, SSL_CERT_FILE=dev_db.ca, WORKERS=1) as srv:
        assert_health_db_pass(srv)
        assert f'tls_ca="{dev_db.ca}"' in srv.log(), srv.log()


def test_tls_sslrootcert_system_implies_verify_full(neonfcgi, dev_db):
    url = dev_db.url_variant(query={"sslrootcert": "system"})
    with neonfcgi.start(DATABASE_URL=url, SSL_CERT_FILE=dev_db.ca, WORKERS=1) as srv:
        assert_health_db_pass(srv)
    # verify-full, really: with the system bundle, the dev CA is not trusted
    url = dev_db.url_variant(query={"sslrootcert": "system"})
    with neonfcgi.start(DATABASE_URL=url, WORKERS=1, HEALTH_TIMEOUT_MS=10000,
                        DB_CONNECT_TIMEOUT_MS=10000) as srv:
        r = srv.get("/health/db")
        assert r.status == 503 and r.json().get("output") == "tls", str(r)


def test_tls_verify_full_without_sslrootcert_uses_ssl_cert_file(neonfcgi, dev_db):
    url = dev_db.url_variant(query={"sslmode": "verify-full"})
    with neonfcgi.start(DATABASE_URL=url, SSL_CERT_FILE=dev_db.ca, WORKERS=1) as srv:
        assert_health_db_pass(srv)
    res = neonfcgi.run("ping", DATABASE_URL=url, SSL_CERT_FILE=dev_db.ca)
    res.expect(0, dev_db.password)


def test_check_config_sslrootcert_system_with_require_exits_78(neonfcgi, dev_db):
    url = dev_db.url_variant(query={"sslmode": "require", "sslrootcert": "system"})
    out = check_config_error(neonfcgi, dev_db, url)
    assert "sslrootcert=system requires sslmode=verify-full" in out, out


def test_check_config_ssl_cert_file_unreadable_exits_78(neonfcgi, dev_db, tmp_path):
    url = dev_db.url_variant(query={"sslmode": "verify-full"})
    missing = tmp_path / "no-such-bundle.pem"
    out = check_config_error(neonfcgi, dev_db, url, SSL_CERT_FILE=missing)
    assert f'SSL_CERT_FILE="{missing}": not a readable file' in out, out
    assert "DATABASE_URL" in out, out


# --------------------------------------------------------------------------
# The sslmode=require warning


def test_tls_sslmode_require_warns_once(neonfcgi, dev_db):
    with neonfcgi.start(DATABASE_URL=dev_db.url, WORKERS=2) as srv:
        assert_health_db_pass(srv)
        log = srv.log()
    lines = sslmode_warnings(log)
    assert len(lines) == 1, f"{len(lines)} sslmode warnings\n{log}"
    assert "use sslmode=verify-full" in lines[0], lines[0]
    assert "SCRAM" not in lines[0], lines[0]
    assert 'tls_ca="none"' in log, log


def test_tls_sslmode_require_channel_binding_warning(neonfcgi, dev_db):
    url = dev_db.url_variant(query={"sslmode": "require", "channel_binding": "require"})
    with neonfcgi.start(DATABASE_URL=url, WORKERS=1) as srv:
        assert_health_db_pass(srv)
        log = srv.log()
    lines = sslmode_warnings(log)
    assert len(lines) == 1, f"{len(lines)} sslmode warnings\n{log}"
    assert "channel_binding=require binds the SCRAM exchange to the TLS channel" in lines[0], \
        lines[0]
    assert "use sslmode=verify-full" in lines[0], lines[0]
    res = neonfcgi.run("check-config", DATABASE_URL=url).expect(0, dev_db.password)
    assert "# warning: sslmode=require encrypts" in res.stdout, res.describe()


def test_tls_verify_full_logs_no_sslmode_warning(neonfcgi, dev_db):
    with neonfcgi.start(DATABASE_URL=dev_db.url_verify_full, WORKERS=1) as srv:
        assert_health_db_pass(srv)
        assert not sslmode_warnings(srv.log()), srv.log()
        assert f'tls_ca="{dev_db.ca}"' in srv.log(), srv.log()
