#!/usr/bin/python3
"""A Neon-proxy look-alike in front of the run's real PostgreSQL (standard library only).

    from neonproxy import NeonProxy
    with NeonProxy("127.0.0.1", dev_db.port, dev_db.password, user="app",
                   backend_ca=dev_db.ca) as proxy:        # started and listening
        url = proxy.url("ep-quiet-lake-123456")            # verify-full, host + hostaddr
        proxy.set_error("endpoint_disabled")               # next connections get it
        proxy.suspend(); proxy.set_wake_delay(1.5)         # cold start on next connect

or ask for the `neon_proxy` fixture (test scope): started in front of `dev_db`,
stopped after the test. Standalone, for shell-driven tests:

    /usr/bin/python3 tests/integration/neonproxy.py --backend-port P --password-file F \
        [--backend-ca CA] [--control SOCK] [--wake-delay S] [--suspend-after S] ...

prints one JSON line {"port", "ca_file", "control", "domain"} and serves until
SIGTERM/SIGINT or a `stop` command on the control socket (a unix socket that
takes one JSON object a line, e.g. {"cmd": "set_error", "kind": "permit"}, and
answers one JSON line).

What it reproduces, and where each behaviour comes from in Neon's proxy
(github.com/neondatabase/neon, directory proxy/src, read at commit 6a35a3e9f149).
Facts were taken from there; the code is our own.

* Start-up (pglb/handshake.rs, pqproto.rs read_startup): SSLRequest answered 'S'
  then TLS; a first byte 0x16 is a direct TLS ClientHello; GSSENCRequest answered
  'N' once; a StartupMessage without TLS gets "connection is insecure (try using
  `sslmode=require`)" (pglb/mod.rs ERR_INSECURE_CONNECTION); protocol 3.x > 3.0
  gets NegotiateProtocolVersion listing the `_pq_.` options; ALPN must be absent
  or "postgresql"; CancelRequest is answered by forwarding it to the compute
  (cancellation.rs: the proxy hands out its own cancel key).
* Endpoint ID (auth/credentials.rs, auth/password_hack.rs, types.rs): from SNI,
  the first DNS label when the rest is the certificate's domain (endpoint_sni);
  from the `options` startup parameter, split on unescaped whitespace
  (pqproto.rs parse_options_raw), items `endpoint=ID` or legacy `project=ID`,
  used only when exactly one is given; both present and different: "Inconsistent
  project name inferred from SNI ('A') and project option ('B')."; a name with
  characters other than alphanumerics and '-': "Project name ('X') must contain
  only alphanumeric characters and hyphen."; `-pooler` is stripped when the
  endpoint is looked up (EndpointId::normalize). Without an ID the proxy asks for
  a cleartext password (auth/backend/hacks.rs password_hack_no_authentication)
  of the form `endpoint=ID;password` or `project=ID$password` (';' tried first);
  anything else: AuthError::MissingEndpointName (auth/mod.rs).
* Authentication (auth/flow.rs, sasl/, scram/): AuthenticationSASL offering
  SCRAM-SHA-256-PLUS and SCRAM-SHA-256 (TLS always here, so channel binding is
  always offered); tls-server-end-point = SHA-256 of the certificate for
  ECDSA/RSA-with-SHA-256 signatures (tls/mod.rs); nonce = client nonce + base64
  of 18 random bytes (scram/messages.rs); a wrong proof or an unknown role (the
  proxy mocks a secret for it, auth/backend/mod.rs) gives "password
  authentication failed for user 'USER'" (auth/mod.rs PasswordFailed); malformed
  SASL messages "authentication protocol violation"; flag 'y' while PLUS is
  offered "SCRAM-PLUS not used"; a binding mismatch "insecure connection: secure
  channel data mismatch"; another binding type "unsupported channel binding
  method X" (sasl/mod.rs to_string_client); 15 s for the exchange, then
  "Authentication timed out" (binary/proxy.rs scram_protocol_timeout). SASL final
  and AuthenticationOk are buffered, not flushed, until the compute answered
  (sasl/stream.rs), so a cold start is seen by the client as a slow SASL final.
* Order of checks (auth/backend/mod.rs auth_quirks, proxy/mod.rs handle_client):
  endpoint access control (endpoint not found / disabled / IP allow list), then
  the per-endpoint connection rate limit (control_plane/mod.rs), then SCRAM,
  then wake_compute (quotas, "temporarily unavailable", wake rate limit, permit),
  then the compute connection and the compute's own start-up errors.
* Errors (stream.rs throw_error, pqproto.rs write_error): one ErrorResponse with
  severity "ERROR" and only the S, C and M fields, SQLSTATE XX000, the message
  text of the error's to_string_client(); then the connection is closed. NOTE:
  Neon uses severity ERROR, not FATAL, for its own errors, and so does this
  fixture. The texts are in ERROR_MODES and the constants below, each with the
  file it comes from.
* Compute start-up (compute/mod.rs set_startup_params, filtered_options,
  proxy/mod.rs forward_compute_params_to_client): the compute gets user,
  database, application_name, replication, `options` without `endpoint=`,
  `project=` and `neon_*` items, and client_encoding=UTF8 (every parameter
  passes with neon_proxy_params_compat:true); the client gets the compute's
  ParameterStatus and NoticeResponse messages, the proxy's own BackendKeyData,
  and ReadyForQuery 'I'. An ErrorResponse from the compute during start-up is
  relayed as its message text with XX000 (PostgresError::to_string_client, with
  the PgBouncer "unsupported startup parameter" hint); failing to reach it gives
  "Couldn't connect to compute node" (compute/mod.rs COULD_NOT_CONNECT). Then
  bytes are relayed both ways (pglb/passthrough.rs).

Not from Neon's proxy sources (this fixture's own model of the control plane):
* Control-plane user-facing messages (the *_cplane, *_quota and similar modes):
  the control plane is closed source; the texts are the ones Neon documents
  (neondatabase/website content/docs/connect/connection-errors.md) or that a
  public mirror of its status reasons carries (yanakipre/bot
  internal/status/user_facing_messages.go). The proxy passes them through
  verbatim (control_plane/messages.rs get_user_facing_message).
* Compute life cycle: `active` or `suspended`. A connection that needs a
  suspended compute wakes it after `wake_delay` seconds (during wake_compute,
  after SCRAM); connections arriving meanwhile wait for the same wake-up
  (counted once). After `suspend_after` seconds without bytes in either
  direction on any session and without new connections (0 = never) the compute
  suspends: every session's backend is ended with pg_terminate_backend(), run
  by the proxy over its own connection as the same role (PostgreSQL allows
  that for a role's own sessions), so the real server sends FATAL 57P01
  "terminating connection due to administrator command"; a session still alive
  5 s later gets that same ErrorResponse from the proxy (counted as
  terminated_by_proxy). The compute connection uses TLS (the dev database's
  pg_hba wants hostssl) and SCRAM-SHA-256(-PLUS) with the role's password.
* Error modes: set_error(kind) makes new connections fail with that kind at the
  stage where Neon would raise it, until cleared (or for `times` connections).

The password is never logged; the fixture's event log (recorded for the
run's password check) holds no secret.
"""

import argparse
import base64
import contextlib
import hashlib
import hmac
import json
import os
import select
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unicodedata
import urllib.parse

import harness  # spawn(): how every test process starts; beside this file, so also standalone

DEFAULT_DOMAIN = "proxy.neon.test"

# pqproto.rs SQLSTATE_INTERNAL_ERROR, write_error: "SERROR\0CXXXXX\0M...\0\0".
SQLSTATE_INTERNAL_ERROR = "XX000"
NEON_ERROR_SEVERITY = "ERROR"

# pglb/mod.rs ERR_INSECURE_CONNECTION
ERR_INSECURE = "connection is insecure (try using `sslmode=require`)"
# auth/mod.rs AuthError::MissingEndpointName (Rust's "\<newline>" joins the lines)
ERR_MISSING_ENDPOINT = (
    "Endpoint ID is not specified. "
    "Either please upgrade the postgres client library (libpq) for SNI support "
    "or pass the endpoint ID (first part of the domain name) as a parameter: "
    "'?options=endpoint%3D<endpoint-id>'. "
    "See more at https://neon.tech/sni")
# auth/mod.rs AuthError::PasswordFailed
ERR_PASSWORD_FAILED = "password authentication failed for user '{user}'"
# auth/mod.rs AuthError::MalformedPassword
ERR_MALFORMED_PASSWORD = "Malformed password message: {what}"
# auth/mod.rs AuthError::UserTimeout
ERR_AUTH_TIMEOUT = "Authentication timed out"
# sasl/mod.rs Error::to_string_client
ERR_SASL_PROTOCOL = "authentication protocol violation"
ERR_SCRAM_PLUS_NOT_USED = "SCRAM-PLUS not used"
ERR_CHANNEL_MISMATCH = "insecure connection: secure channel data mismatch"
ERR_CHANNEL_METHOD = "unsupported channel binding method {method}"
# auth/credentials.rs ComputeUserInfoParseError
ERR_MISSING_KEY = "Parameter '{key}' is missing in startup packet."
ERR_INCONSISTENT = ("Inconsistent project name inferred from SNI ('{domain}') "
                    "and project option ('{option}').")
ERR_MALFORMED_PROJECT = ("Project name ('{name}') must contain only alphanumeric "
                         "characters and hyphen.")
# compute/mod.rs COULD_NOT_CONNECT (ConnectionError::TlsError to_string_client)
ERR_COULD_NOT_CONNECT = "Couldn't connect to compute node"
# compute/mod.rs PostgresError::to_string_client, for PgBouncer's refusals
UNSUPPORTED_PARAM_HINT = (
    ". Please use unpooled connection or remove this parameter from the startup "
    "package. More details: "
    "https://neon.tech/docs/connect/connection-errors#unsupported-startup-parameter")
# control_plane/errors.rs REQUEST_FAILED
REQUEST_FAILED = "Control plane request failed"

# The FATAL a PostgreSQL backend sends when pg_terminate_backend() or a fast
# shutdown ends it (src/backend/tcop/postgres.c ProcessInterrupts); what a
# client of a suspending Neon compute sees.
ADMIN_SHUTDOWN_SQLSTATE = "57P01"
ADMIN_SHUTDOWN_TEXT = "terminating connection due to administrator command"

_CPLANE_SRC = ("control plane user-facing message, passed through by "
               "control_plane/messages.rs get_user_facing_message")
_PG_SRC = ("PostgreSQL's own start-up refusal, relayed by compute/mod.rs "
           "PostgresError::to_string_client")

# kind -> (stage, message text, source). Stages, in the order Neon runs them:
#   access   get_endpoint_access_control / IP allow list (before SCRAM)
#   limit    connection_attempt_rate_limit (before SCRAM)
#   auth     the SCRAM verdict
#   wake     wake_compute (after SCRAM)
#   connect  reaching the compute
#   compute  the compute's own start-up answer
ERROR_MODES = {
    "endpoint_not_found": (
        "access", f"{REQUEST_FAILED}: endpoint cannot be found",
        "control_plane/messages.rs get_user_facing_message, HTTP 404 without a "
        "user-facing message"),
    "endpoint_disabled": (
        "access", f"{REQUEST_FAILED}: endpoint is disabled",
        "control_plane/messages.rs get_user_facing_message, HTTP 406"),
    "endpoint_not_found_cplane": (
        "access", "The requested endpoint could not be found, or you don't have "
        "access to it. Please check the provided ID and try again.",
        _CPLANE_SRC + " (reason ENDPOINT_NOT_FOUND)"),
    "ip_not_allowed": (
        "access", "This IP address {ip} is not allowed to connect to this endpoint. "
        "Please add it to the allowed list in the Neon console. "
        "Make sure to check for IPv4 or IPv6 addresses.",
        "auth/mod.rs AuthError::IpAddressNotAllowed"),
    "too_many_connections": (
        "limit", "Too many connections to this endpoint. Please try again later.",
        "auth/mod.rs AuthError::TooManyConnections, raised by "
        "control_plane/mod.rs connection_attempt_rate_limit"),
    "password_failed": (
        "auth", ERR_PASSWORD_FAILED,
        "auth/mod.rs AuthError::PasswordFailed (forced, even with the right password)"),
    "temporarily_unavailable": (
        "wake", f"{REQUEST_FAILED}: endpoint is temporarily unavailable. "
        "Check your quotas and/or contact our support.",
        "control_plane/messages.rs get_user_facing_message, HTTP 423/422 "
        "(quota errors without a user-facing message)"),
    "control_plane_failed": (
        "wake", REQUEST_FAILED,
        "control_plane/errors.rs ControlPlaneError::Transport / other HTTP status"),
    "compute_time_quota": (
        "wake", "Your account or project has exceeded the compute time quota. "
        "Upgrade your plan to increase limits.",
        _CPLANE_SRC + " (reason COMPUTE_TIME_QUOTA_EXCEEDED)"),
    "active_time_quota": (
        "wake", "Your project has exceeded the active time quota. "
        "Upgrade your plan to increase limits.",
        _CPLANE_SRC + " (reason ACTIVE_TIME_QUOTA_EXCEEDED)"),
    "written_data_quota": (
        "wake", "Your project has exceeded the written data quota. "
        "Upgrade your plan to increase limits.",
        _CPLANE_SRC + " (reason WRITTEN_DATA_QUOTA_EXCEEDED)"),
    "data_transfer_quota": (
        "wake", "Your project has exceeded the data transfer quota. "
        "Upgrade your plan to increase limits.",
        _CPLANE_SRC + " (reason DATA_TRANSFER_QUOTA_EXCEEDED)"),
    "logical_size_quota": (
        "wake", "Your project has exceeded the logical size quota. "
        "Upgrade your plan to increase limits.",
        _CPLANE_SRC + " (reason LOGICAL_SIZE_QUOTA_EXCEEDED)"),
    "branch_compute_time": (
        "wake", "You've exceeded the compute time for this branch. "
        "Upgrade your plan to increase limits or connect to another branch.",
        _CPLANE_SRC + " (reason NON_PRIMARY_BRANCH_COMPUTE_TIME_EXCEEDED)"),
    "active_endpoints_limit": (
        "wake", "You have exceeded the limit of concurrently active endpoints. "
        "Please suspend some endpoints and try again.",
        _CPLANE_SRC + " (reason ACTIVE_ENDPOINTS_LIMIT_EXCEEDED)"),
    "active_endpoints_limit_short": (
        "wake", "active endpoints limit exceeded",
        "the variant Neon's connection-errors documentation quotes"),
    "running_operations": (
        "wake", "Your project already has running operations. "
        "Please wait until they complete, and then try again.",
        _CPLANE_SRC + " (reason RUNNING_OPERATIONS)"),
    "cplane_rate_limit": (
        "wake", "You've exceeded the rate limit. Please wait a moment and try again.",
        _CPLANE_SRC + " (reason RATE_LIMIT_EXCEEDED)"),
    "wake_rate_limit": (
        "wake", "Too many connections attempts",
        "control_plane/errors.rs WakeComputeError::TooManyConnections, raised by "
        "control_plane/client/cplane_proxy_v1.rs wake_compute"),
    "permit": (
        "wake", "Failed to acquire permit to connect to the database. "
        "Too many database connection attempts are currently ongoing.",
        "control_plane/errors.rs WakeComputeError::TooManyConnectionAttempts and "
        "compute/mod.rs ConnectionError::TooManyConnectionAttempts (ApiLockError)"),
    "could_not_connect": (
        "connect", ERR_COULD_NOT_CONNECT,
        "compute/mod.rs COULD_NOT_CONNECT (ConnectionError::TlsError)"),
    "compute_too_many_clients": (
        "compute", "sorry, too many clients already", _PG_SRC + " (53300)"),
    "compute_starting_up": (
        "compute", "the database system is starting up", _PG_SRC + " (57P03)"),
    "compute_shutting_down": (
        "compute", "the database system is shutting down", _PG_SRC + " (57P03)"),
}

# Errors the proxy raises by itself (not selectable): kind -> (text, source).
NATURAL_ERRORS = {
    "insecure": (ERR_INSECURE, "pglb/mod.rs ERR_INSECURE_CONNECTION"),
    "missing_endpoint": (ERR_MISSING_ENDPOINT, "auth/mod.rs MissingEndpointName"),
    "password_failed": (ERR_PASSWORD_FAILED, "auth/mod.rs PasswordFailed"),
    "malformed_password": (ERR_MALFORMED_PASSWORD, "auth/mod.rs MalformedPassword"),
    "auth_timeout": (ERR_AUTH_TIMEOUT, "auth/mod.rs UserTimeout"),
    "sasl_protocol": (ERR_SASL_PROTOCOL, "sasl/mod.rs to_string_client"),
    "scram_plus_not_used": (ERR_SCRAM_PLUS_NOT_USED, "scram/exchange.rs"),
    "channel_binding_mismatch": (ERR_CHANNEL_MISMATCH, "scram/exchange.rs"),
    "channel_binding_method": (ERR_CHANNEL_METHOD, "sasl/mod.rs"),
    "missing_user": (ERR_MISSING_KEY, "auth/credentials.rs MissingKey"),
    "inconsistent_endpoint": (ERR_INCONSISTENT, "auth/credentials.rs"),
    "malformed_endpoint": (ERR_MALFORMED_PROJECT, "auth/credentials.rs"),
    "could_not_connect": (ERR_COULD_NOT_CONNECT, "compute/mod.rs COULD_NOT_CONNECT"),
    "compute_error": ("(the compute's message)", "compute/mod.rs PostgresError"),
}

# Protocol constants (PostgreSQL protocol 3.0)
SSL_REQUEST_CODE = 80877103
GSSENC_REQUEST_CODE = 80877104
CANCEL_REQUEST_CODE = 80877102
PROTOCOL_3_0 = 196608
MAX_STARTUP_PACKET_LENGTH = 10000   # pqproto.rs
MAX_PASSWORD_LENGTH = 512           # stream.rs read_password_message
SCRAM_RAW_NONCE_LEN = 18            # scram/messages.rs
SCRAM_ITERATIONS = 4096             # PostgreSQL's scram_iterations default
HANDSHAKE_TIMEOUT_S = 15.0          # binary/proxy.rs handshake_timeout
SCRAM_TIMEOUT_S = 15.0              # binary/proxy.rs scram_protocol_timeout
COMPUTE_TIMEOUT_S = 10.0
TERMINATE_GRACE_S = 5.0
SERVERLESS_SNI = ("api", "apiauth")  # serverless SERVERLESS_DRIVER_SNI, AUTH_BROKER_SNI
RELAY_BUFFER_LIMIT = 1 << 18
MAX_EVENTS = 10000

_OID_HASH = {  # signatureAlgorithm OID -> tls-server-end-point hash (RFC 5929 4.1)
    "1.2.840.113549.1.1.4": "sha256",    # md5WithRSA -> SHA-256
    "1.2.840.113549.1.1.5": "sha256",    # sha1WithRSA -> SHA-256
    "1.2.840.10045.4.1": "sha256",       # ecdsa-with-SHA1 -> SHA-256
    "1.2.840.113549.1.1.11": "sha256",
    "1.2.840.113549.1.1.12": "sha384",
    "1.2.840.113549.1.1.13": "sha512",
    "1.2.840.10045.4.3.2": "sha256",
    "1.2.840.10045.4.3.3": "sha384",
    "1.2.840.10045.4.3.4": "sha512",
}


class ProxyError(Exception):
    """An error the proxy reports to the client (ErrorResponse, then close)."""

    def __init__(self, kind, text):
        super().__init__(text)
        self.kind = kind
        self.text = text


class ClientGone(Exception):
    """The client closed, timed out or broke the protocol: close silently."""


# --------------------------------------------------------------------------
# Wire helpers


def _i32(n):
    return struct.pack("!i", n)


def message(tag, payload=b""):
    return tag + struct.pack("!I", len(payload) + 4) + payload


def auth_message(code, extra=b""):
    return message(b"R", _i32(code) + extra)


def error_response(text, sqlstate=SQLSTATE_INTERNAL_ERROR, severity=NEON_ERROR_SEVERITY,
                   nonlocalized=False):
    """Neon's ErrorResponse: S, C and M only (pqproto.rs write_error). With
    nonlocalized, also the V field, as PostgreSQL itself sends it."""
    body = b"S" + severity.encode() + b"\0"
    if nonlocalized:
        body += b"V" + severity.encode() + b"\0"
    body += b"C" + sqlstate.encode() + b"\0" + b"M" + text.encode() + b"\0\0"
    return message(b"E", body)


def parse_error_fields(body):
    fields = {}
    for part in body.split(b"\0"):
        if part:
            fields[chr(part[0])] = part[1:].decode(errors="replace")
    return fields


def split_options(options):
    """pqproto.rs parse_options_raw: split on whitespace not preceded by an
    unescaped backslash, keep escapes as they are, drop empty items."""
    out, cur, last_escape = [], [], False
    for ch in options:
        if ch in " \t\n\r\f\v" and not last_escape:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        last_escape = ch == "\\" and not last_escape
    out.append("".join(cur))
    return [o for o in out if o]


def parse_endpoint_param(item):
    """password_hack.rs parse_endpoint_param."""
    for prefix in ("project=", "endpoint="):
        if item.startswith(prefix):
            return item[len(prefix):]
    return None


def neon_option(item):
    """proxy/mod.rs neon_option: ^neon_(\\w+):(.+)"""
    if not item.startswith("neon_"):
        return None
    key, sep, value = item[5:].partition(":")
    if not sep or not key or not value or not all(c.isalnum() or c == "_" for c in key):
        return None
    return key, value


def normalize_endpoint(ep):
    """types.rs EndpointId::normalize."""
    for suffix in ("-pooler", "-local-proxy"):
        if ep.endswith(suffix):
            return ep[:-len(suffix)]
    return ep


def saslprep(password):
    """PostgreSQL applies SASLprep to UTF-8 passwords; ASCII ones are kept.
    Non-ASCII ones are NFKC-normalized (close to SASLprep, enough for tests)."""
    if password.isascii():
        return password.encode()
    return unicodedata.normalize("NFKC", password).encode()


def _der_read(buf, pos):
    """(tag, content start, content end) of the DER element at pos."""
    tag = buf[pos]
    length = buf[pos + 1]
    pos += 2
    if length & 0x80:
        n = length & 0x7F
        length = int.from_bytes(buf[pos:pos + n], "big")
        pos += n
    return tag, pos, pos + length


def _der_oid(content):
    first = content[0]
    parts = [first // 40, first % 40]
    val = 0
    for b in content[1:]:
        val = (val << 7) | (b & 0x7F)
        if not b & 0x80:
            parts.append(val)
            val = 0
    return ".".join(map(str, parts))


def tls_server_end_point(cert_der):
    """RFC 5929 tls-server-end-point hash of a certificate (tls/mod.rs), or
    None when the signature algorithm defines none."""
    try:
        _, cstart, _ = _der_read(cert_der, 0)          # Certificate
        _, _, tbs_end = _der_read(cert_der, cstart)    # tbsCertificate
        _, astart, _ = _der_read(cert_der, tbs_end)    # signatureAlgorithm
        tag, ostart, oend = _der_read(cert_der, astart)
        if tag != 0x06:
            return None
        algo = _OID_HASH.get(_der_oid(cert_der[ostart:oend]))
    except IndexError:
        return None
    return hashlib.new(algo, cert_der).digest() if algo else None


def _b64(data):
    return base64.b64encode(data).decode()


def _hmac(key, data):
    return hmac.new(key, data, hashlib.sha256).digest()


def _xor(a, b):
    return bytes(x ^ y for x, y in zip(a, b))


class ScramSecret:
    """What the control plane hands the proxy for a role (scram/secret.rs)."""

    def __init__(self, password=None):
        self.iterations = SCRAM_ITERATIONS
        self.salt = os.urandom(16)
        if password is None:  # auth/backend/mod.rs: mocked for unknown roles
            self.stored_key = os.urandom(32)
            self.server_key = os.urandom(32)
            return
        salted = hashlib.pbkdf2_hmac("sha256", saslprep(password), self.salt,
                                     self.iterations)
        self.stored_key = hashlib.sha256(_hmac(salted, b"Client Key")).digest()
        self.server_key = _hmac(salted, b"Server Key")

    def check_password(self, password_bytes):
        """flow.rs validate_password_and_exchange, for the cleartext path."""
        try:
            pw = saslprep(password_bytes.decode())
        except UnicodeDecodeError:
            pw = password_bytes
        salted = hashlib.pbkdf2_hmac("sha256", pw, self.salt, self.iterations)
        client_key = _hmac(salted, b"Client Key")
        return hmac.compare_digest(hashlib.sha256(client_key).digest(), self.stored_key)


# --------------------------------------------------------------------------
# A blocking message stream over a socket (plain or TLS), with a deadline


class PqStream:
    def __init__(self, sock):
        self.sock = sock
        self.rbuf = bytearray()
        self.wbuf = bytearray()

    def recv_exact(self, n):
        while len(self.rbuf) < n:
            try:
                chunk = self.sock.recv(max(65536, n - len(self.rbuf)))
            except socket.timeout as exc:
                raise TimeoutError("read timed out") from exc
            except (OSError, ssl.SSLError) as exc:
                raise ClientGone(str(exc)) from exc
            if not chunk:
                raise ClientGone("peer closed the connection")
            self.rbuf += chunk
        out = bytes(self.rbuf[:n])
        del self.rbuf[:n]
        return out

    def read_startup(self):
        header = self.recv_exact(8)
        length, code = struct.unpack("!II", header)
        if length < 8 or length - 8 > MAX_STARTUP_PACKET_LENGTH:
            raise ClientGone(f"invalid startup message length {length}")
        return code, self.recv_exact(length - 8)

    def read_message(self, max_len=None):
        tag = self.recv_exact(1)
        (length,) = struct.unpack("!I", self.recv_exact(4))
        if length < 4 or (max_len is not None and length - 4 > max_len):
            raise ClientGone(f"message too long ({length})")
        return tag, self.recv_exact(length - 4)

    def read_password_message(self):
        tag, body = self.read_message(MAX_PASSWORD_LENGTH)
        if tag != b"p":
            raise ClientGone(f"incorrect message tag, expected 'p', got {tag!r}")
        return body

    def write(self, data):
        self.wbuf += data

    def flush(self):
        if self.wbuf:
            try:
                self.sock.sendall(bytes(self.wbuf))
            except socket.timeout as exc:
                raise ClientGone("write timed out") from exc
            except (OSError, ssl.SSLError) as exc:
                raise ClientGone(str(exc)) from exc
            self.wbuf.clear()


def _raw_shutdown(sock):
    """Shut a socket down at the OS level (wakes a thread blocked on it),
    bypassing SSLSocket.shutdown which would drop the TLS state under the
    owning thread's feet."""
    if sock is None:
        return
    with contextlib.suppress(OSError, ValueError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _close_quietly(sock, tls_close=False):
    if sock is None:
        return
    if tls_close and isinstance(sock, ssl.SSLSocket):
        # Send close_notify without waiting for the peer's (as PostgreSQL and
        # Neon's TLS stream shutdown do).
        with contextlib.suppress(Exception):
            sock.setblocking(False)
            sock.unwrap()
    with contextlib.suppress(OSError):
        sock.close()


# --------------------------------------------------------------------------
# Certificates (openssl CLI)


def make_certificates(directory, domain):
    """A CA and a wildcard server certificate for *.DOMAIN (and DOMAIN),
    ECDSA P-256 with SHA-256 signatures. Returns (ca, cert, key) paths."""
    d = str(directory)
    ca_key, ca_crt = os.path.join(d, "ca.key"), os.path.join(d, "ca.crt")
    key, csr, crt = (os.path.join(d, n) for n in ("server.key", "server.csr", "server.crt"))
    ext = os.path.join(d, "server.ext")

    def run(*args):
        proc = harness.spawn(["openssl", *args], stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            _, err = proc.communicate(timeout=30)
        finally:
            harness.halt(proc)
        if proc.returncode != 0:
            raise RuntimeError(f"openssl {args[0]} failed: {err.decode()[-500:]}")

    curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
    run("req", "-x509", "-new", "-nodes", *curve, "-keyout", ca_key, "-out", ca_crt,
        "-days", "7", "-sha256", "-subj", f"/CN=neonproxy test CA {os.getpid()}-{time.time_ns()}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    run("req", "-new", "-nodes", *curve, "-keyout", key, "-out", csr,
        "-subj", f"/CN=*.{domain}")
    with open(ext, "w") as f:
        f.write(f"subjectAltName=DNS:*.{domain},DNS:{domain}\n"
                "basicConstraints=critical,CA:FALSE\n"
                "keyUsage=critical,digitalSignature\n"
                "extendedKeyUsage=serverAuth\n")
    run("x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key, "-CAcreateserial",
        "-out", crt, "-days", "7", "-sha256", "-extfile", ext)
    for p in (csr, ext, ca_key):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(p)
    os.chmod(key, 0o600)
    os.chmod(ca_crt, 0o644)
    os.chmod(crt, 0o644)
    return ca_crt, crt, key


# --------------------------------------------------------------------------
# The proxy


class _Conn:
    """One client connection (handshake, then maybe a relayed session)."""

    def __init__(self, sock, addr):
        self.sock = sock          # raw or TLS socket of the client
        self.addr = addr
        self.backend = None       # TLS socket to the compute, once open
        self.backend_pid = None
        self.backend_secret = None
        self.cancel_key = None
        self.generation = None
        self.inject_fatal = False
        self.sni = None
        self.stream = None        # PqStream to the client (for errors)
        self.backend_leftover = b""
        self.thread = None
        self.done = threading.Event()
        self.frame_hdr = bytearray()
        self.frame_skip = 0


class NeonProxy:
    """See the module docstring. Attributes: port, ca_file, domain, state."""

    def __init__(self, backend_host, backend_port, password, user="app", database=None,
                 backend_ca=None, domain=DEFAULT_DOMAIN, listen_host="127.0.0.1", port=0,
                 wake_delay=0.0, suspend_after=0.0, state="active", endpoints=None,
                 pooler_backend=None, terminate="server", log=None):
        if state not in ("active", "suspended"):
            raise ValueError("state must be 'active' or 'suspended'")
        if terminate not in ("server", "proxy"):
            raise ValueError("terminate must be 'server' or 'proxy'")
        self.terminate = terminate
        self.backend = (backend_host, int(backend_port))
        self.pooler_backend = tuple(pooler_backend) if pooler_backend else None
        self._password = password
        self.user = user
        self.database = database or user
        self.backend_ca = str(backend_ca) if backend_ca else None
        self.domain = domain
        self.listen_host = listen_host
        self.port = int(port)
        self.endpoints = set(endpoints) if endpoints else None
        self.ca_file = None
        self._log_sink = log
        self._secret = ScramSecret(password)
        self._salted_cache = {}
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._state = state
        self._generation = 0
        self._wake_event = None
        self._wake_delay = float(wake_delay)
        self._suspend_after = float(suspend_after)
        self._last_activity = time.monotonic()
        self._error = None            # (kind, remaining or None)
        self._conns = set()
        self._sessions = set()
        self._cancel_map = {}
        self._threads = []
        self._stopping = False
        self._started = False
        self._listen = None
        self._wake_r = self._wake_w = None
        self._dir = None
        self._events = []
        self._counters = {
            "accepted": 0, "sessions": 0, "auth_failures": 0, "wakeups": 0,
            "queries": 0, "simple_queries": 0, "extended_executes": 0,
            "cancel_requests": 0, "suspends": 0, "terminated_by_server": 0,
            "terminated_by_proxy": 0, "errors": {}, "auth_methods": {}, "endpoints": {},
        }

    # -- public API
    def start(self):
        """Generate certificates, bind, listen; returns once connections are
        accepted (the socket listens before this returns)."""
        if self._started:
            return self
        self._started = True
        try:
            self._dir = tempfile.mkdtemp(prefix="neonfcgi-it-neonproxy-")
            os.chmod(self._dir, 0o755)
            self.ca_file, cert, key = make_certificates(self._dir, self.domain)
            with open(cert, "rb") as f:
                pem = f.read().decode()
            leaf = pem[:pem.index("-----END CERTIFICATE-----") + 25]
            self._cert_hash = tls_server_end_point(ssl.PEM_cert_to_DER_cert(leaf))
            self._server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._server_ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            self._server_ctx.load_cert_chain(cert, key)
            self._server_ctx.set_alpn_protocols(["postgresql"])
            self._server_ctx.sni_callback = self._on_sni
            self._backend_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            self._backend_ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            if self.backend_ca:
                self._backend_ctx.load_verify_locations(self.backend_ca)
            else:
                self._backend_ctx.check_hostname = False
                self._backend_ctx.verify_mode = ssl.CERT_NONE
            family = socket.AF_INET6 if ":" in self.listen_host else socket.AF_INET
            self._listen = socket.socket(family, socket.SOCK_STREAM)
            self._listen.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._listen.bind((self.listen_host, self.port))
            self._listen.listen(1024)
            self.port = self._listen.getsockname()[1]
            self._wake_r, self._wake_w = os.pipe()
            self._last_activity = time.monotonic()
            for target, name in ((self._accept_loop, "accept"), (self._monitor, "monitor")):
                t = threading.Thread(target=target, name=f"neonproxy-{name}", daemon=True)
                t.start()
                self._threads.append(t)
        except BaseException:
            self.stop()
            raise
        self._event(f"listening on {self.listen_host}:{self.port}, compute {self._state}")
        return self

    def stop(self, timeout=10.0):
        """Stop accepting, end every connection, join every thread, remove
        the certificates. Idempotent."""
        with self._cond:
            if self._stopping:
                return
            self._stopping = True
            self._cond.notify_all()
            if self._wake_event is not None:
                self._wake_event.set()
        if self._wake_w is not None:
            with contextlib.suppress(OSError):
                os.write(self._wake_w, b"x")
        deadline = time.monotonic() + timeout
        with self._lock:  # no connection is added once _stopping is set
            conns = list(self._conns)
        for c in conns:
            _raw_shutdown(c.sock)
            _raw_shutdown(c.backend)
        for t in self._threads:
            t.join(max(0.1, deadline - time.monotonic()))
        for c in conns:
            if c.thread is not None:
                c.thread.join(max(0.1, deadline - time.monotonic()))
        left = [c.thread.name for c in conns if c.thread is not None and c.thread.is_alive()]
        left += [t.name for t in self._threads if t.is_alive()]
        _close_quietly(self._listen)
        for fd in (self._wake_r, self._wake_w):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._wake_r = self._wake_w = None
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)
        self._event("stopped")
        if harness is not None:
            harness.RECORD.add("neonproxy events", "\n".join(self._events))
        if left:
            raise RuntimeError(f"neonproxy: threads still running after stop: {left}")

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    @property
    def state(self):
        """'active', 'suspending', 'suspended' or 'waking'."""
        with self._lock:
            return self._state

    def host_for(self, endpoint_id, pooler=False):
        return f"{endpoint_id}{'-pooler' if pooler else ''}.{self.domain}"

    def url(self, endpoint=None, pooler=False, user=None, password=None, dbname=None,
            sslmode="verify-full", **params):
        """A libpq URI: host = the endpoint's name under the test domain (so
        SNI and verify-full see it), hostaddr = the listening address.
        password=False leaves the password out; endpoint=None uses the IP as
        host (no SNI, as an old client). Extra keywords become parameters."""
        user = user or self.user
        pw = self._password if password is None else password
        host = self.host_for(endpoint, pooler) if endpoint else self.listen_host
        auth = urllib.parse.quote(user, safe="")
        if pw is not False:
            auth += ":" + urllib.parse.quote(pw, safe="")
        query = {}
        if endpoint:
            query["hostaddr"] = self.listen_host
        query["sslmode"] = sslmode
        if sslmode in ("verify-ca", "verify-full"):
            query["sslrootcert"] = self.ca_file
        query.update({k: str(v) for k, v in params.items()})
        hostpart = f"[{host}]" if ":" in host else host
        return urllib.parse.urlunsplit((
            "postgresql", f"{auth}@{hostpart}:{self.port}",
            "/" + urllib.parse.quote(dbname or self.database, safe=""),
            urllib.parse.urlencode(query, safe="/"), ""))

    def conninfo(self, endpoint=None, pooler=False, user=None, dbname=None,
                 sslmode="verify-full", **params):
        """The same as url() as a key=value string, without the password (give
        it with PGPASSWORD)."""
        kv = {}
        if endpoint:
            kv["host"] = self.host_for(endpoint, pooler)
            kv["hostaddr"] = self.listen_host
        else:
            kv["host"] = self.listen_host
        kv.update(port=self.port, user=user or self.user, dbname=dbname or self.database,
                  sslmode=sslmode)
        if sslmode in ("verify-ca", "verify-full"):
            kv["sslrootcert"] = self.ca_file
        kv.update(params)

        def q(v):
            v = str(v)
            return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"
        return " ".join(f"{k}={q(v)}" for k, v in kv.items())

    def set_error(self, kind, times=None):
        """New connections fail with ERROR_MODES[kind] (None clears), for
        `times` connections or until cleared."""
        if kind is not None and kind not in ERROR_MODES:
            raise ValueError(f"unknown error kind {kind!r}; known: {sorted(ERROR_MODES)}")
        with self._lock:
            self._error = None if kind is None else [kind, times]
        self._event(f"error mode {kind}" + (f" x{times}" if times else ""))

    def set_wake_delay(self, seconds):
        with self._cond:
            self._wake_delay = float(seconds)

    def set_suspend_after(self, seconds):
        """Quiet time before the compute suspends (0 = never)."""
        with self._cond:
            self._suspend_after = float(seconds)
            self._last_activity = time.monotonic()
            self._cond.notify_all()

    def counters(self):
        """A snapshot of the counters (a deep copy)."""
        with self._lock:
            c = json.loads(json.dumps(self._counters))
            c["active_sessions"] = len(self._sessions)
            c["open_connections"] = len(self._conns)
            c["state"] = self._state
            return c

    def wait_counter(self, name, value, timeout=10.0):
        """Wait until counters()[name] >= value; returns the counters."""
        deadline = time.monotonic() + timeout
        while True:
            c = self.counters()
            if c[name] >= value:
                return c
            if time.monotonic() > deadline:
                raise AssertionError(f"neonproxy counter {name} = {c[name]}, "
                                     f"waited {timeout:g}s for {value}")
            time.sleep(0.01)

    def suspend(self):
        """Suspend the compute now: end every session (FATAL 57P01 from the
        real server). State is 'suspending' meanwhile; returns once every
        session is gone and the state is 'suspended'."""
        with self._cond:
            while self._state in ("waking", "suspending") and not self._stopping:
                self._cond.wait(0.5)
            if self._state != "active":
                return
            self._state = "suspending"
            self._generation += 1
            self._counters["suspends"] += 1
            victims = list(self._sessions)
            self._cond.notify_all()
        self._event(f"compute suspending ({len(victims)} session(s) to end)")
        try:
            self._terminate(victims)
        finally:
            with self._cond:
                self._state = "suspended"
                self._cond.notify_all()
            self._event("compute suspended")

    def wake(self):
        """Wake the compute now (takes wake_delay); returns once active."""
        self._ensure_awake()

    def events(self):
        with self._lock:
            return list(self._events)

    # -- internals: bookkeeping
    def _event(self, text):
        line = f"{time.strftime('%H:%M:%S')} {text}"
        with self._lock:
            self._events.append(line)
            if len(self._events) > MAX_EVENTS:  # a soak test runs long
                del self._events[:len(self._events) - MAX_EVENTS]
        if self._log_sink is not None:
            with contextlib.suppress(Exception):
                self._log_sink(line)

    def _count(self, name, n=1):
        with self._lock:
            self._counters[name] += n

    def _count_in(self, name, key):
        with self._lock:
            d = self._counters[name]
            d[key] = d.get(key, 0) + 1

    def _touch(self):
        self._last_activity = time.monotonic()

    @staticmethod
    def _on_sni(sslobj, server_name, ctx):
        with contextlib.suppress(Exception):
            sslobj.neon_sni = server_name
        return None

    # -- accept loop and quiet-time monitor
    def _accept_loop(self):
        poller = select.poll()
        poller.register(self._listen.fileno(), select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        while not self._stopping:
            try:
                events = poller.poll(1000)
            except InterruptedError:
                continue
            if self._stopping:
                break
            if not any(fd == self._listen.fileno() for fd, _ in events):
                continue
            try:
                sock, addr = self._listen.accept()
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                if self._stopping:
                    break
                time.sleep(0.05)  # e.g. EMFILE: let connections finish
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Conn(sock, addr)
            with self._lock:
                if self._stopping:
                    _close_quietly(sock)
                    break
                self._counters["accepted"] += 1
                self._conns.add(conn)
            self._touch()
            thread = threading.Thread(target=self._handle, args=(conn,),
                                      name=f"neonproxy-conn-{addr[1]}", daemon=True)
            try:
                thread.start()
            except RuntimeError:  # no more threads: refuse this one, keep serving
                with self._lock:
                    self._conns.discard(conn)
                _close_quietly(sock)
                continue
            conn.thread = thread

    def _monitor(self):
        with self._cond:
            while not self._stopping:
                after = self._suspend_after
                if after > 0 and self._state == "active":
                    remaining = self._last_activity + after - time.monotonic()
                    if remaining <= 0:
                        self._cond.release()
                        try:
                            self._event(f"no traffic for {after:g}s")
                            self.suspend()
                        finally:
                            self._cond.acquire()
                        continue
                    self._cond.wait(min(remaining, 1.0))
                else:
                    self._cond.wait(1.0)

    # -- compute life cycle
    def _ensure_awake(self):
        """Returns the compute generation the caller may connect to."""
        waker = False
        with self._cond:
            while self._state == "suspending" and not self._stopping:
                self._cond.wait(0.5)
            if self._stopping:
                raise ClientGone("proxy stopping")
            if self._state == "active":
                return self._generation
            if self._state == "suspended":
                self._state = "waking"
                self._wake_event = threading.Event()
                self._counters["wakeups"] += 1
                waker = True
            ev = self._wake_event
            delay = self._wake_delay
        if waker:
            self._event(f"waking compute ({delay:g}s)")
            try:
                # Sleep the wake delay; stop() interrupts it.
                ev.wait(delay)
            finally:
                with self._cond:
                    if self._state == "waking":
                        self._state = "active"
                    self._last_activity = time.monotonic()
                    self._cond.notify_all()
                    ev.set()
            self._event("compute active")
        else:
            ev.wait()
        with self._cond:
            if self._stopping:
                raise ClientGone("proxy stopping")
            return self._generation

    def _terminate(self, victims):
        """End these sessions as a suspending compute does."""
        victims = [v for v in victims if v.backend_pid]
        if not victims:
            return
        pids = sorted({v.backend_pid for v in victims})
        grace = TERMINATE_GRACE_S
        try:
            if self.terminate == "proxy":
                grace = 0.0
            else:
                self._admin_query("SELECT pg_terminate_backend(pid) FROM unnest(ARRAY["
                                  + ",".join(map(str, pids)) + "]::int[]) AS pid")
        except Exception as exc:  # noqa: BLE001 - fall back to our own FATAL
            self._event(f"pg_terminate_backend failed ({type(exc).__name__}); "
                        "the proxy ends the sessions itself")
        deadline = time.monotonic() + grace
        for v in victims:
            if v.done.wait(max(0.0, deadline - time.monotonic())):
                self._count("terminated_by_server")
            else:
                v.inject_fatal = True
                _raw_shutdown(v.backend)
                v.done.wait(TERMINATE_GRACE_S)
                self._count("terminated_by_proxy")

    def _admin_query(self, sql):
        sock = self._backend_connect(self.backend, {"user": self.user,
                                                    "database": self.database,
                                                    "application_name": "neonproxy"})[0]
        try:
            sock.settimeout(COMPUTE_TIMEOUT_S)
            st = PqStream(sock)
            st.write(message(b"Q", sql.encode() + b"\0"))
            st.flush()
            while True:
                tag, body = st.read_message()
                if tag == b"E":
                    raise RuntimeError(parse_error_fields(body).get("M", "error"))
                if tag == b"Z":
                    break
            st.write(message(b"X"))
            with contextlib.suppress(ClientGone):
                st.flush()
        finally:
            _close_quietly(sock, tls_close=True)

    # -- a client connection
    def _handle(self, conn):
        try:
            conn.sock.settimeout(HANDSHAKE_TIMEOUT_S)
            params = self._handshake(conn)
            if params is None:
                return
            self._serve(conn, conn.stream, params)
        except ProxyError as exc:
            self._count_in("errors", exc.kind)
            self._event(f"error {exc.kind} to client")
            if conn.stream is not None:
                with contextlib.suppress(Exception):
                    conn.sock.settimeout(2.0)
                    conn.stream.write(error_response(exc.text))
                    conn.stream.flush()
        except (ClientGone, TimeoutError, ssl.SSLError, OSError, UnicodeDecodeError,
                struct.error, ValueError):
            pass
        except Exception as exc:  # noqa: BLE001 - a bug here must not kill the proxy
            self._event(f"internal error {type(exc).__name__}: {exc}")
        finally:
            with self._lock:
                self._sessions.discard(conn)
                self._conns.discard(conn)
                if conn.cancel_key is not None:
                    self._cancel_map.pop(conn.cancel_key, None)
            _close_quietly(conn.backend, tls_close=True)
            _close_quietly(conn.sock, tls_close=True)
            conn.done.set()

    def _handshake(self, conn):
        """pglb/handshake.rs. Returns the start-up parameters, or None (a
        cancel request). conn.stream is the client stream throughout."""
        st = conn.stream = PqStream(conn.sock)
        tried_ssl = tried_gss = False
        tls = False
        try:
            first = conn.sock.recv(1, socket.MSG_PEEK)
        except socket.timeout as exc:
            raise ClientGone("handshake timeout") from exc
        if not first:
            raise ClientGone("closed before start-up")
        if first[0] == 0x16:  # direct TLS (sslnegotiation=direct)
            tried_ssl = True
            st = conn.stream = self._upgrade(conn)
            tls = True
        while True:
            code, body = st.read_startup()
            if code == SSL_REQUEST_CODE:
                if tried_ssl:
                    raise ClientGone("protocol violation: second SSLRequest")
                tried_ssl = True
                st.write(b"S")
                st.flush()
                if st.rbuf:
                    raise ClientGone("data is sent before server replied with EncryptionResponse")
                st = conn.stream = self._upgrade(conn)
                tls = True
            elif code == GSSENC_REQUEST_CODE:
                if tried_gss or tls:
                    raise ClientGone("protocol violation: GSSENCRequest")
                tried_gss = True
                st.write(b"N")
                st.flush()
            elif code == CANCEL_REQUEST_CODE:
                if len(body) == 8:
                    self._forward_cancel(struct.unpack("!ii", body))
                return None
            elif code >> 16 == 3:
                params = self._parse_params(body)
                if not tls:
                    raise ProxyError("insecure", ERR_INSECURE)
                if code != PROTOCOL_3_0:  # newer minor version: negotiate down
                    unsupported = [k for k in params if k.startswith("_pq_.")]
                    for k in unsupported:
                        params.pop(k)
                    payload = _i32(PROTOCOL_3_0) + _i32(len(unsupported)) + b"".join(
                        k.encode() + b"\0" for k in unsupported)
                    st.write(message(b"v", payload))
                    st.flush()
                return params
            else:
                raise ClientGone(f"unsupported start-up code {code}")

    def _upgrade(self, conn):
        try:
            tls = self._server_ctx.wrap_socket(conn.sock, server_side=True,
                                               do_handshake_on_connect=False)
            conn.sock = tls
            tls.do_handshake()
        except (ssl.SSLError, OSError) as exc:
            raise ClientGone(f"TLS handshake failed: {exc}") from exc
        alpn = tls.selected_alpn_protocol()
        if alpn not in (None, "postgresql"):
            raise ClientGone(f"unexpected ALPN {alpn!r}")
        conn.sni = getattr(tls, "neon_sni", None)
        return PqStream(tls)

    @staticmethod
    def _parse_params(body):
        parts = body.split(b"\0")
        params = {}
        for i in range(0, len(parts) - 1, 2):
            if not parts[i]:
                break
            params[parts[i].decode()] = parts[i + 1].decode()
        return params

    def _forward_cancel(self, key):
        self._count("cancel_requests")
        with self._lock:
            target = self._cancel_map.get(tuple(key))
        if target is None:
            return
        addr, pid, secret = target
        try:
            with socket.create_connection(addr, timeout=5) as s:
                s.sendall(struct.pack("!IIii", 16, CANCEL_REQUEST_CODE, pid, secret))
        except OSError:
            pass

    def _endpoint(self, conn, params):
        """auth/credentials.rs ComputeUserInfoMaybeEndpoint::parse."""
        if "user" not in params:
            raise ProxyError("missing_user", ERR_MISSING_KEY.format(key="user"))
        option = None
        if "options" in params:
            found = [e for e in map(parse_endpoint_param, split_options(params["options"]))
                     if e is not None]
            option = found[0] if len(found) == 1 else None
        domain = None
        if conn.sni:
            sub, dot, rest = conn.sni.partition(".")
            if dot and rest == self.domain and sub not in SERVERLESS_SNI:
                domain = sub
        if option is not None and domain is not None and option != domain:
            raise ProxyError("inconsistent_endpoint",
                             ERR_INCONSISTENT.format(domain=domain, option=option))
        ep = option if option is not None else domain
        if ep is not None and not all(c.isalnum() or c == "-" for c in ep):
            raise ProxyError("malformed_endpoint", ERR_MALFORMED_PROJECT.format(name=ep))
        return ep

    def _pending_error(self, stage):
        with self._lock:
            if self._error is None:
                return None
            kind, remaining = self._error
            if ERROR_MODES[kind][0] != stage:
                return None
            if remaining is not None:
                remaining -= 1
                self._error = None if remaining <= 0 else [kind, remaining]
            return kind

    def _check_stage(self, stage, conn, user):
        kind = self._pending_error(stage)
        if kind is not None:
            text = ERROR_MODES[kind][1].format(ip=conn.addr[0], user=user)
            raise ProxyError(kind, text)

    def _serve(self, conn, st, params):
        user = None
        ep = self._endpoint(conn, params)
        user = params["user"]
        password_hack = None
        if ep is None:
            # hacks.rs password_hack_no_authentication + flow.rs get_password
            st.write(auth_message(3))
            st.flush()
            raw = st.read_password_message()
            if not raw.endswith(b"\0"):
                raise ProxyError("malformed_password",
                                 ERR_MALFORMED_PASSWORD.format(what="missing terminator"))
            raw = raw[:-1]
            for sep in (b";", b"$"):
                head, found, tail = raw.partition(sep)
                if found:
                    try:
                        ep = parse_endpoint_param(head.decode())
                    except UnicodeDecodeError:
                        ep = None
                    password_hack = tail
                    break
            if ep is None:
                raise ProxyError("missing_endpoint", ERR_MISSING_ENDPOINT)
        self._count_in("endpoints", normalize_endpoint(ep))
        # auth_quirks: endpoint access control, then the rate limit
        if self.endpoints is not None and normalize_endpoint(ep) not in self.endpoints:
            raise ProxyError("endpoint_not_found", ERROR_MODES["endpoint_not_found"][1])
        self._check_stage("access", conn, user)
        self._check_stage("limit", conn, user)
        secret = self._secret if user == self.user else ScramSecret(None)
        if password_hack is not None:
            ok = secret.check_password(password_hack)
            method = "cleartext (password hack)"
            if ok:
                st.write(auth_message(0))
        else:
            conn.sock.settimeout(SCRAM_TIMEOUT_S)
            try:
                ok, method = self._scram(st, secret)
            except TimeoutError as exc:
                raise ProxyError("auth_timeout", ERR_AUTH_TIMEOUT) from exc
        if not ok or self._pending_error("auth") is not None:
            self._count("auth_failures")
            raise ProxyError("password_failed", ERR_PASSWORD_FAILED.format(user=user))
        self._count_in("auth_methods", method)
        conn.sock.settimeout(None)
        # connect_to_compute: wake_compute, then the compute itself
        self._check_stage("wake", conn, user)
        conn.generation = self._ensure_awake()
        self._check_stage("connect", conn, user)
        self._check_stage("compute", conn, user)
        backend_addr = self.backend
        if self.pooler_backend and ep.endswith("-pooler"):
            backend_addr = self.pooler_backend
        compute_params = self._compute_params(params)
        conn.backend, pid, secret_key, greeting = self._backend_connect(
            backend_addr, compute_params, conn)
        conn.backend_pid, conn.backend_secret = pid, secret_key
        key = None
        with self._lock:
            while key is None or key in self._cancel_map:
                key = struct.unpack("!ii", os.urandom(8))
            conn.cancel_key = key
            self._cancel_map[key] = (backend_addr, pid, secret_key)
        for tag, body in greeting:
            if tag == b"K":
                st.write(message(b"K", struct.pack("!ii", *key)))
            else:
                st.write(message(tag, body))
        st.write(message(b"Z", b"I"))
        conn.sock.settimeout(30.0)
        st.flush()
        with self._cond:
            stale = conn.generation != self._generation or self._stopping
            self._sessions.add(conn)
            self._counters["sessions"] += 1
        if stale:  # the compute was suspended while this one connected
            conn.inject_fatal = True
            _raw_shutdown(conn.backend)
        self._relay(conn, st)

    def _scram(self, st, secret):
        """flow.rs Scram + sasl/stream.rs + scram/exchange.rs, server side.
        Returns (ok, method). The success messages are left in the buffer."""
        st.write(auth_message(10, b"SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0"))
        st.flush()
        body = st.read_password_message()
        method, sep, rest = body.partition(b"\0")
        if not sep or len(rest) < 4:
            raise ProxyError("sasl_protocol", ERR_SASL_PROTOCOL)
        (n,) = struct.unpack("!I", rest[:4])
        if n != len(rest) - 4:
            raise ProxyError("sasl_protocol", ERR_SASL_PROTOCOL)
        method = method.decode(errors="replace")
        if method not in ("SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"):
            raise ProxyError("sasl_protocol", ERR_SASL_PROTOCOL)
        try:
            first = rest[4:].decode()
        except UnicodeDecodeError as exc:
            raise ProxyError("sasl_protocol", ERR_SASL_PROTOCOL) from exc
        parts = first.split(",")
        if len(parts) < 4:
            raise ProxyError("sasl_protocol", ERR_SASL_PROTOCOL)
        flag, authzid = parts[0], parts[1]
        if flag not in ("n", "y") and not flag.startswith("p="):
            raise ProxyError("sasl_protocol", ERR_SASL_PROTOCOL)
        if authzid or not parts[2].startswith("n=") or not parts[3].startswith("r="):
            raise ProxyError("sasl_protocol", ERR_SASL_PROTOCOL)
        if not _extensions_ok(parts[4:]):
            raise ProxyError("sasl_protocol", ERR_SASL_PROTOCOL)
        bare = first[len(flag) + len(authzid) + 2:]
        client_nonce = parts[3][2:]
        if flag == "y" and self._cert_hash is not None:
            raise ProxyError("scram_plus_not_used", ERR_SCRAM_PLUS_NOT_USED)
        if flag.startswith("p=") and flag[2:] != "tls-server-end-point":
            raise ProxyError("channel_binding_method",
                             ERR_CHANNEL_METHOD.format(method=flag[2:]))
        server_first = (f"r={client_nonce}{_b64(os.urandom(SCRAM_RAW_NONCE_LEN))}"
                        f",s={_b64(secret.salt)},i={secret.iterations}")
        combined_nonce = server_first.split(",")[0][2:]
        st.write(auth_message(11, server_first.encode()))
        st.flush()
        try:
            final = st.read_password_message().decode()
        except UnicodeDecodeError as exc:
            raise ProxyError("sasl_protocol", ERR_SASL_PROTOCOL) from exc
        without_proof, comma, proof = final.rpartition(",")
        fparts = without_proof.split(",")
        if (not comma or len(fparts) < 2 or not fparts[0].startswith("c=")
                or not fparts[1].startswith("r=") or not _extensions_ok(fparts[2:])
                or not proof.startswith("p=")):
            raise ProxyError("sasl_protocol", ERR_SASL_PROTOCOL)
        try:
            proof_bytes = base64.b64decode(proof[2:], validate=True)
        except ValueError as exc:
            raise ProxyError("sasl_protocol", ERR_SASL_PROTOCOL) from exc
        if len(proof_bytes) != 32:
            raise ProxyError("sasl_protocol", ERR_SASL_PROTOCOL)
        if flag == "n":
            expected_cb = "biws"
        elif flag == "y":
            expected_cb = "eSws"
        else:
            if self._cert_hash is None:
                raise ProxyError("sasl_protocol", ERR_SASL_PROTOCOL)
            expected_cb = _b64(f"{flag},,".encode() + self._cert_hash)
        if fparts[0][2:] != expected_cb:
            raise ProxyError("channel_binding_mismatch", ERR_CHANNEL_MISMATCH)
        if fparts[1][2:] != combined_nonce:
            raise ProxyError("sasl_protocol", ERR_SASL_PROTOCOL)
        auth_msg = f"{bare},{server_first},{without_proof}".encode()
        client_key = _xor(proof_bytes, _hmac(secret.stored_key, auth_msg))
        if not hmac.compare_digest(hashlib.sha256(client_key).digest(), secret.stored_key):
            return False, method
        server_sig = _hmac(secret.server_key, auth_msg)
        st.write(auth_message(12, f"v={_b64(server_sig)}".encode()))
        st.write(auth_message(0))
        return True, method

    @staticmethod
    def _compute_params(params):
        """compute/mod.rs set_startup_params."""
        opts = params.get("options", "")
        compat = any((neon_option(o) or ("",))[0] == "proxy_params_compat"
                     for o in split_options(opts))
        out = {} if compat else {"client_encoding": "UTF8"}
        for k, v in params.items():
            if k == "options":
                kept = [o for o in split_options(v)
                        if parse_endpoint_param(o) is None and neon_option(o) is None]
                if kept:
                    out["options"] = " ".join(kept)
            elif k in ("user", "database", "application_name", "replication") or compat:
                out[k] = v
        return out

    # -- the compute side (client of the real PostgreSQL)
    def _salted(self, salt, iterations):
        key = (salt, iterations)
        with self._lock:
            hit = self._salted_cache.get(key)
        if hit is None:
            hit = hashlib.pbkdf2_hmac("sha256", saslprep(self._password), salt, iterations)
            with self._lock:
                self._salted_cache[key] = hit
        return hit

    def _backend_connect(self, addr, params, conn=None):
        """TCP + TLS + start-up + authentication to the compute, then read its
        greeting up to ReadyForQuery. Returns (tls socket, pid, secret,
        [(tag, body)] of ParameterStatus/NoticeResponse/BackendKeyData)."""
        try:
            raw = socket.create_connection(addr, timeout=COMPUTE_TIMEOUT_S)
        except OSError as exc:
            raise ProxyError("could_not_connect", ERR_COULD_NOT_CONNECT) from exc
        sock = raw
        try:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if conn is not None:
                conn.backend = raw
            raw.sendall(struct.pack("!II", 8, SSL_REQUEST_CODE))
            answer = raw.recv(1)
            if answer != b"S":
                raise OSError("compute refused TLS")
            server_name = addr[0] if self.backend_ca else None
            sock = self._backend_ctx.wrap_socket(raw, server_hostname=server_name)
            if conn is not None:
                conn.backend = sock
            st = PqStream(sock)
            payload = _i32(PROTOCOL_3_0) + b"".join(
                k.encode() + b"\0" + v.encode() + b"\0" for k, v in params.items()) + b"\0"
            st.write(struct.pack("!I", len(payload) + 4) + payload)
            st.flush()
            self._backend_auth(st, sock)
            pid = secret = None
            greeting = []
            while True:
                tag, body = st.read_message()
                if tag == b"K":
                    pid, secret = struct.unpack("!ii", body[:8])
                    greeting.append((tag, body))
                elif tag in (b"S", b"N"):
                    greeting.append((tag, body))
                elif tag == b"Z":
                    break
                elif tag == b"E":
                    self._compute_refused(body)
                else:
                    raise OSError(f"unexpected message {tag!r} from the compute")
            if conn is not None:
                conn.backend_leftover = bytes(st.rbuf)
            return sock, pid, secret, greeting
        except ProxyError:
            _close_quietly(sock)
            raise
        except (OSError, ssl.SSLError, ClientGone, TimeoutError, struct.error) as exc:
            _close_quietly(sock)
            raise ProxyError("could_not_connect", ERR_COULD_NOT_CONNECT) from exc

    @staticmethod
    def _compute_refused(body):
        msg = parse_error_fields(body).get("M", "")
        if (msg.startswith("unsupported startup parameter: ")
                or msg.startswith("unsupported startup parameter in options: ")):
            msg += UNSUPPORTED_PARAM_HINT
        raise ProxyError("compute_error", msg)

    def _backend_auth(self, st, sock):
        nonce = salted = auth_msg = None
        while True:
            tag, body = st.read_message()
            if tag == b"E":
                self._compute_refused(body)
            if tag != b"R":
                raise OSError(f"unexpected message {tag!r} during authentication")
            (code,) = struct.unpack("!i", body[:4])
            if code == 0:
                return
            if code == 3:  # cleartext
                st.write(message(b"p", saslprep(self._password) + b"\0"))
            elif code == 5:  # md5
                inner = hashlib.md5(self._password.encode() + self.user.encode()).hexdigest()
                outer = hashlib.md5(inner.encode() + body[4:8]).hexdigest()
                st.write(message(b"p", b"md5" + outer.encode() + b"\0"))
            elif code == 10:  # SASL: PLUS when offered and the binding is defined
                mechs = body[4:].split(b"\0")
                cb = None
                if b"SCRAM-SHA-256-PLUS" in mechs:
                    cb = tls_server_end_point(sock.getpeercert(binary_form=True) or b"")
                nonce = _b64(os.urandom(SCRAM_RAW_NONCE_LEN))
                gs2 = "p=tls-server-end-point,," if cb else "n,,"
                bare = f"n=,r={nonce}"
                mech = b"SCRAM-SHA-256-PLUS" if cb else b"SCRAM-SHA-256"
                data = (gs2 + bare).encode()
                st.write(message(b"p", mech + b"\0" + _i32(len(data)) + data))
                cb_data = gs2.encode() + (cb or b"")
            elif code == 11:  # SASLContinue: server-first
                server_first = body[4:].decode()
                attrs = dict(a.split("=", 1) for a in server_first.split(","))
                if not attrs["r"].startswith(nonce):
                    raise OSError("compute's SCRAM nonce does not extend ours")
                salted = self._salted(base64.b64decode(attrs["s"]), int(attrs["i"]))
                without_proof = f"c={_b64(cb_data)},r={attrs['r']}"
                auth_msg = f"{bare},{server_first},{without_proof}".encode()
                client_key = _hmac(salted, b"Client Key")
                stored = hashlib.sha256(client_key).digest()
                proof = _xor(client_key, _hmac(stored, auth_msg))
                st.write(message(b"p", f"{without_proof},p={_b64(proof)}".encode()))
            elif code == 12:  # SASLFinal: check the server's signature
                final = body[4:].decode()
                expected = _hmac(_hmac(salted, b"Server Key"), auth_msg)
                if not final.startswith("v=") or base64.b64decode(final[2:]) != expected:
                    raise OSError("compute's SCRAM signature is wrong")
                continue
            else:
                raise OSError(f"unsupported authentication request {code} from the compute")
            st.flush()

    # -- relay (pglb/passthrough.rs)
    def _count_frames(self, conn, data):
        """Count Query ('Q') and Execute ('E') messages in the client stream."""
        i, n = 0, len(data)
        while i < n:
            if conn.frame_skip:
                k = min(conn.frame_skip, n - i)
                i += k
                conn.frame_skip -= k
                continue
            need = 5 - len(conn.frame_hdr)
            conn.frame_hdr += data[i:i + need]
            i += min(need, n - i)
            if len(conn.frame_hdr) == 5:
                tag = conn.frame_hdr[0]
                (length,) = struct.unpack("!I", bytes(conn.frame_hdr[1:5]))
                conn.frame_skip = max(0, length - 4)
                conn.frame_hdr.clear()
                if tag == ord("Q"):
                    with self._lock:
                        self._counters["queries"] += 1
                        self._counters["simple_queries"] += 1
                elif tag == ord("E"):
                    with self._lock:
                        self._counters["queries"] += 1
                        self._counters["extended_executes"] += 1

    def _relay(self, conn, st):
        c, b = conn.sock, conn.backend
        # Bytes already read past the greeting on either side go first.
        to_b, to_c = bytearray(st.rbuf), bytearray(conn.backend_leftover)
        st.rbuf.clear()
        self._count_frames(conn, to_b)
        drain_deadline = None
        c.setblocking(False)
        b.setblocking(False)
        c_eof = b_eof = broken = False
        injected = False
        poller = select.poll()
        want = {}
        waiting = (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError,
                   InterruptedError)
        while not broken:
            progress = False
            if not c_eof and len(to_b) < RELAY_BUFFER_LIMIT:
                try:
                    data = c.recv(65536)
                except waiting:
                    data = None
                except (OSError, ssl.SSLError):
                    data = b""
                if data is not None:
                    progress = True
                    if data:
                        to_b += data
                        self._count_frames(conn, data)
                        self._touch()
                    else:
                        c_eof = True
            if not b_eof and len(to_c) < RELAY_BUFFER_LIMIT:
                try:
                    data = b.recv(65536)
                except waiting:
                    data = None
                except (OSError, ssl.SSLError):
                    data = b""
                if data is not None:
                    progress = True
                    if data:
                        to_c += data
                        self._touch()
                    else:
                        b_eof = True
            if b_eof and conn.inject_fatal and not injected:
                injected = True
                to_c += error_response(ADMIN_SHUTDOWN_TEXT, ADMIN_SHUTDOWN_SQLSTATE,
                                       "FATAL", nonlocalized=True)
            for dst, buf in ((b, to_b), (c, to_c)):
                if buf and not (dst is b and b_eof):
                    try:
                        sent = dst.send(buf)
                        del buf[:sent]
                        progress = progress or sent > 0
                    except waiting:
                        pass
                    except (OSError, ssl.SSLError):
                        broken = True
            if c_eof and (not to_b or b_eof):
                break
            if b_eof and not to_c:
                break
            if c_eof or b_eof:  # one side is gone: the rest gets 10 s to drain
                if drain_deadline is None:
                    drain_deadline = time.monotonic() + 10.0
                elif time.monotonic() > drain_deadline:
                    break
            if progress:
                continue
            for sock, eof, inbuf, outbuf in ((c, c_eof, to_b, to_c), (b, b_eof, to_c, to_b)):
                ev = 0
                if not eof and len(inbuf) < RELAY_BUFFER_LIMIT:
                    ev |= select.POLLIN
                if outbuf and not (sock is b and b_eof):
                    ev |= select.POLLOUT
                fd = sock.fileno()
                if want.get(fd) == ev:
                    continue
                if ev == 0:
                    poller.unregister(fd)
                    del want[fd]
                elif fd in want:
                    poller.modify(fd, ev)
                    want[fd] = ev
                else:
                    poller.register(fd, ev)
                    want[fd] = ev
            try:
                poller.poll(1000)
            except InterruptedError:
                pass
            if self._stopping:
                break


def _extensions_ok(parts):
    """scram/messages.rs validate_sasl_extensions."""
    for p in parts:
        if len(p) < 2 or not (p[0].isascii() and p[0].isalpha()) or p[1] != "=":
            return False
    return True


# --------------------------------------------------------------------------
# Harness fixture

if harness is not None:
    @harness.fixture()
    def neon_proxy(dev_db):
        """A NeonProxy in front of dev_db (role app), stopped after the test."""
        p = NeonProxy("127.0.0.1", dev_db.port, dev_db.password, user="app",
                      database="app", backend_ca=dev_db.ca)
        p.start()
        try:
            yield p
        finally:
            p.stop()


# --------------------------------------------------------------------------
# Standalone


def _control_server(proxy, path, stop_event):
    """One JSON command a line on a unix socket; one JSON answer a line."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    os.chmod(path, 0o600)
    srv.listen(16)
    srv.settimeout(0.5)

    def answer(cmd):
        name = cmd.get("cmd")
        if name == "counters":
            return {"ok": True, "counters": proxy.counters()}
        if name == "state":
            return {"ok": True, "state": proxy.state}
        if name == "set_error":
            proxy.set_error(cmd.get("kind"), cmd.get("times"))
            return {"ok": True}
        if name == "set_wake_delay":
            proxy.set_wake_delay(cmd["seconds"])
            return {"ok": True}
        if name == "set_suspend_after":
            proxy.set_suspend_after(cmd["seconds"])
            return {"ok": True}
        if name == "suspend":
            proxy.suspend()
            return {"ok": True, "state": proxy.state}
        if name == "wake":
            proxy.wake()
            return {"ok": True, "state": proxy.state}
        if name == "info":
            return {"ok": True, "port": proxy.port, "ca_file": proxy.ca_file,
                    "domain": proxy.domain, "error_modes": sorted(ERROR_MODES)}
        if name == "stop":
            stop_event.set()
            return {"ok": True}
        return {"ok": False, "error": f"unknown command {name!r}"}

    def serve(c):
        with c:
            f = c.makefile("rwb")
            for line in f:
                try:
                    reply = answer(json.loads(line))
                except Exception as exc:  # noqa: BLE001 - reported to the caller
                    reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                f.write(json.dumps(reply).encode() + b"\n")
                f.flush()

    try:
        while not stop_event.is_set():
            try:
                c, _ = srv.accept()
            except socket.timeout:
                continue
            threading.Thread(target=serve, args=(c,), daemon=True).start()
    finally:
        srv.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def main(argv=None):
    ap = argparse.ArgumentParser(description="A Neon-proxy look-alike for tests.")
    ap.add_argument("--backend-host", default="127.0.0.1")
    ap.add_argument("--backend-port", type=int, required=True)
    ap.add_argument("--password-file", required=True,
                    help="file whose first line is the role's password")
    ap.add_argument("--user", default="app")
    ap.add_argument("--database", default=None)
    ap.add_argument("--backend-ca", default=None, help="CA that signed the compute's certificate")
    ap.add_argument("--listen-host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--domain", default=DEFAULT_DOMAIN)
    ap.add_argument("--wake-delay", type=float, default=0.0)
    ap.add_argument("--suspend-after", type=float, default=0.0)
    ap.add_argument("--state", choices=("active", "suspended"), default="active")
    ap.add_argument("--error", default=None, choices=sorted(ERROR_MODES))
    ap.add_argument("--control", default=None, help="unix socket path for commands")
    ap.add_argument("--log", action="store_true", help="print events on stderr")
    opts = ap.parse_args(argv)
    with open(opts.password_file) as f:
        password = f.readline().rstrip("\r\n")
    log = (lambda line: print(line, file=sys.stderr, flush=True)) if opts.log else None
    proxy = NeonProxy(opts.backend_host, opts.backend_port, password, user=opts.user,
                      database=opts.database, backend_ca=opts.backend_ca,
                      domain=opts.domain, listen_host=opts.listen_host, port=opts.port,
                      wake_delay=opts.wake_delay, suspend_after=opts.suspend_after,
                      state=opts.state, log=log)
    stop_event = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop_event.set())
    proxy.start()
    try:
        if opts.error:
            proxy.set_error(opts.error)
        ctl = None
        if opts.control:
            ctl = threading.Thread(target=_control_server,
                                   args=(proxy, opts.control, stop_event), daemon=True)
            ctl.start()
        print(json.dumps({"port": proxy.port, "ca_file": proxy.ca_file,
                          "control": opts.control, "domain": proxy.domain}), flush=True)
        while not stop_event.wait(0.5):
            pass
        if ctl is not None:
            ctl.join(5)
    finally:
        proxy.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
