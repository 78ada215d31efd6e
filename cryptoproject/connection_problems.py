"""Connections that fail because of their settings (a CA, a password, a host name), told apart from outages.

A server that is down is waited for or retried (the processes ride out outages); a certificate signed by another
CA, a password the server refuses or a host name the certificate does not cover never get better by retrying. The
functions here turn such a failure into one line naming the setting to change (``KAFKA_SSL_CAFILE``,
``DATABASE_URL (sslrootcert)``, ``REDIS_URL (password)``, ...), and return None for anything else. No message
carries a password: URLs are shown without their userinfo, and the servers' own texts name users, never secrets.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import socket
import ssl
import struct
from collections.abc import Iterator

# OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH and X509_V_ERR_IP_ADDRESS_MISMATCH: the certificate is fine, the name is not.
_NAME_MISMATCH_CODES = frozenset({62, 64})


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    """``exc`` and every exception it was raised from or during (redis-py keeps the ssl error as the context)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def tls_problem(exc: BaseException, *, host: str, host_setting: str, ca_setting: str) -> str | None:
    """The line for a TLS verification failure in ``exc``'s chain, naming ``host_setting`` for a name the certificate
    does not cover and ``ca_setting`` for a certificate the CA did not sign (or a CA file that cannot be read)."""
    for err in _chain(exc):
        if isinstance(err, ssl.SSLCertVerificationError):
            reason = err.verify_message or str(err)
            if err.verify_code in _NAME_MISMATCH_CODES:
                return f"{host_setting}: the server's certificate is not valid for the host name {host} ({reason})"
            return f"{ca_setting}: the server's certificate at {host} is not signed by a trusted CA ({reason})"
        if isinstance(err, (FileNotFoundError, IsADirectoryError, PermissionError)) and err.filename:
            return f"{ca_setting}: cannot read the CA file {err.filename} ({err.strerror})"
        if isinstance(err, ssl.SSLError) and err.reason in {"PEM_LIB", "NO_CERTIFICATE_OR_CRL_FOUND"}:
            return f"{ca_setting}: the CA file holds no certificate ({err.reason})"
    return None


# --------------------------------------------------------------------------------------------- PostgreSQL
# libpq says what went wrong in text only; each pattern names the part of DATABASE_URL to change.
_POSTGRES_PATTERNS = (
    ("certificate verify failed", "sslrootcert"),
    ("root certificate file", "sslrootcert"),
    ("does not match host name", "host"),
    ("password authentication failed", "password"),
    ("no encryption", "sslmode"),  # "no pg_hba.conf entry for ... no encryption": the server takes TLS only
    ("server does not support SSL", "sslmode"),
    ("no pg_hba.conf entry", "user, database or host"),
)


def postgres_problem(text: str, setting: str = "DATABASE_URL") -> str | None:
    """The part of ``setting`` a libpq error ``text`` is about (``DATABASE_URL (sslrootcert)``), or None."""
    for pattern, part in _POSTGRES_PATTERNS:
        if pattern in text:
            return f"{setting} ({part})"
    return None


# --------------------------------------------------------------------------------------------- Redis
def redis_problem(exc: BaseException, *, setting: str, host: str) -> str | None:
    """The line for a Redis failure caused by ``setting`` (the URL's password, ``ssl_ca_certs`` or host), or None."""
    import redis

    for err in _chain(exc):
        if isinstance(err, redis.AuthenticationError):
            return f"{setting} (password): Redis at {host} refused the credentials ({err})"
    return tls_problem(exc, host=host, host_setting=f"{setting} (host)", ca_setting=f"{setting} (ssl_ca_certs)")


# --------------------------------------------------------------------------------------------- Kafka
def kafka_tls_problem(address: str, cafile: str, timeout: float = 3.0) -> str | None:
    """Open one TLS connection to ``address`` (``host:port``) as kafka-python would (``cafile`` or the system's CAs,
    host name checked) and name the setting a verification failure is about; None when it verifies or when the
    broker cannot be reached at all (an outage, not a setting)."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    try:
        context = ssl.create_default_context(cafile=cafile or None)
    except (OSError, ssl.SSLError) as exc:
        return tls_problem(exc, host=host, host_setting="KAFKA_BOOTSTRAP_SERVERS", ca_setting="KAFKA_SSL_CAFILE") or (
            f"KAFKA_SSL_CAFILE: cannot load {cafile} ({exc})"
        )
    try:
        with (
            socket.create_connection((host, int(port)), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=host),
        ):
            return None
    except ssl.SSLCertVerificationError as exc:
        return tls_problem(exc, host=host, host_setting="KAFKA_BOOTSTRAP_SERVERS", ca_setting="KAFKA_SSL_CAFILE")
    except ssl.SSLError as exc:
        # The port answers, but not with TLS: a PLAINTEXT or SASL_PLAINTEXT listener.
        return f"KAFKA_SECURITY_PROTOCOL: the broker at {address} did not answer a TLS handshake ({exc.reason})"
    except (OSError, ValueError):
        return None


# Kafka's API keys and the error codes the SASL probe reads (the Kafka protocol guide); non-flexible versions, so the
# request header is v1 and the response header v0 on every broker since 2.0 (SaslHandshake v1, SaslAuthenticate v1).
_SASL_HANDSHAKE, _SASL_AUTHENTICATE = 17, 36
_UNSUPPORTED_SASL_MECHANISM, _SASL_AUTHENTICATION_FAILED = 33, 58
_SCRAM_HASHES = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}


class _Kafka:
    """One broker connection that speaks just the SASL requests (kafka-python logs a refused login and retries until
    its timeout, without saying why to its caller)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.correlation = 0

    def request(self, api_key: int, body: bytes) -> bytes:
        """Send one request (version 1) and return its response body."""
        self.correlation += 1
        client = b"cryptoproject-preflight"
        message = struct.pack(">hhih", api_key, 1, self.correlation, len(client)) + client + body
        self.sock.sendall(struct.pack(">i", len(message)) + message)
        (size,) = struct.unpack(">i", self._read(4))
        return self._read(size)[4:]  # after the correlation id

    def _read(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                raise ConnectionError("the broker closed the connection")
            data += chunk
        return data

    def authenticate(self, token: bytes) -> tuple[int, str, bytes]:
        """One SaslAuthenticate round: (error code, error message, the server's bytes)."""
        body = self.request(_SASL_AUTHENTICATE, struct.pack(">i", len(token)) + token)
        (error, length) = struct.unpack(">hh", body[:4])
        message = body[4 : 4 + length].decode(errors="replace") if length >= 0 else ""
        rest = body[4 + max(length, 0) :]
        (size,) = struct.unpack(">i", rest[:4])
        return error, message, rest[4 : 4 + max(size, 0)]


def _scram(kafka: _Kafka, mechanism: str, username: str, password: str) -> tuple[int, str]:
    """A SCRAM login (RFC 5802, as Kafka's): the error code and message of its last round."""
    digest = _SCRAM_HASHES[mechanism]
    user = username.replace("=", "=3D").replace(",", "=2C")
    first_bare = f"n={user},r={secrets.token_urlsafe(18)}"
    error, message, server_first = kafka.authenticate(f"n,,{first_bare}".encode())
    if error:
        return error, message
    fields = dict(item.split("=", 1) for item in server_first.decode().split(","))
    salted = hashlib.pbkdf2_hmac(digest, password.encode(), base64.b64decode(fields["s"]), int(fields["i"]))
    client_key = hmac.new(salted, b"Client Key", digest).digest()
    without_proof = f"c=biws,r={fields['r']}"
    auth_message = f"{first_bare},{server_first.decode()},{without_proof}".encode()
    signature = hmac.new(hashlib.new(digest, client_key).digest(), auth_message, digest).digest()
    proof = base64.b64encode(bytes(a ^ b for a, b in zip(client_key, signature, strict=True))).decode()
    error, message, _ = kafka.authenticate(f"{without_proof},p={proof}".encode())
    return error, message


def kafka_sasl_problem(
    address: str, *, tls: bool, cafile: str, mechanism: str, username: str, password: str, timeout: float = 5.0
) -> str | None:
    """Log in to the broker at ``address`` once with ``mechanism`` (PLAIN or SCRAM) and name the setting the broker
    refuses (``KAFKA_SASL_PASSWORD``, ``KAFKA_SASL_MECHANISM``); None when it accepts, when the mechanism is one
    this probe does not speak, or when the broker cannot be reached (an outage, or a TLS problem named elsewhere)."""
    if mechanism != "PLAIN" and mechanism not in _SCRAM_HASHES:
        return None
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as raw:
            sock = (
                ssl.create_default_context(cafile=cafile or None).wrap_socket(raw, server_hostname=host) if tls else raw
            )
            with sock:
                kafka = _Kafka(sock)
                body = kafka.request(_SASL_HANDSHAKE, struct.pack(">h", len(mechanism)) + mechanism.encode())
                (error,) = struct.unpack(">h", body[:2])
                if error == _UNSUPPORTED_SASL_MECHANISM:
                    return f"KAFKA_SASL_MECHANISM: the broker at {address} does not accept {mechanism}"
                if error:
                    return None
                if mechanism == "PLAIN":
                    error, message, _ = kafka.authenticate(f"\0{username}\0{password}".encode())
                else:
                    error, message = _scram(kafka, mechanism, username, password)
    except (OSError, ValueError, KeyError, struct.error):
        return None
    if error == _SASL_AUTHENTICATION_FAILED:
        return (
            f"KAFKA_SASL_PASSWORD: the broker at {address} refused user {username!r} with "
            f"KAFKA_SASL_MECHANISM={mechanism} (check KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD: {message})"
        )
    return None
