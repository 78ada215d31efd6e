"""E-mail over SMTP (Django's SMTP backend on ``EMAIL_HOST``:``EMAIL_PORT``), under the attempt's total deadline
(the mail server's name lookup included: :mod:`notifications.resolver`).

``EMAIL_TIMEOUT`` bounds each socket operation only; a server that trickles its replies would restart it with every
byte. A watchdog timer therefore shuts the connection's socket down when the deadline passes, which ends whatever
read or write is blocked on it (the banner read inside smtplib's constructor included).
"""

from __future__ import annotations

import contextlib
import smtplib
import socket
import threading
from typing import Any

from django.conf import settings
from django.core.mail import BadHeaderError, EmailMessage
from django.core.mail.backends.smtp import EmailBackend

from cryptoproject.security import redact_text
from notifications import resolver
from notifications.channels.base import Deadline, PermanentError, TransientError
from notifications.deadline import DeadlineExceededError
from notifications.models import Delivery


def target(delivery: Delivery) -> str:
    """The circuit breaker's target: the SMTP server."""
    return f"smtp:{settings.EMAIL_HOST}:{settings.EMAIL_PORT}"


SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"


class _WatchedBackend(EmailBackend):
    """Django's SMTP backend whose connections are remembered as soon as they have a socket (smtplib's constructor
    already reads the server's banner, before the backend could hand the connection over)."""

    def __init__(self, fired: threading.Event, opened: list[smtplib.SMTP], deadline: Deadline, **kwargs: Any) -> None:
        super().__init__(fail_silently=False, **kwargs)
        self._fired = fired
        self._opened = opened
        self._deadline = deadline

    @property
    def connection_class(self) -> type[smtplib.SMTP]:
        """smtplib's class, remembering each instance in ``opened`` (refusing to connect once ``fired``), whose
        name lookup runs inside the attempt's deadline (smtplib's own ``getaddrinfo`` has no timeout)."""
        base = smtplib.SMTP_SSL if self.use_ssl else smtplib.SMTP
        fired, opened, deadline = self._fired, self._opened, self._deadline

        class Watched(base):  # type: ignore[valid-type,misc]
            def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
                if fired.is_set():
                    raise TimeoutError("the attempt's deadline passed")
                # Connect to the addresses resolved within the deadline; smtplib keeps the name in ``_host``, so
                # SMTP_SSL and STARTTLS still verify the certificate against the name.
                failure: OSError = OSError(f"{host} resolves to no address")
                for address in resolver.addresses(host, port, deadline):
                    try:
                        sock = super()._get_socket(address, port, min(timeout, deadline.remaining()))
                    except OSError as exc:
                        failure = exc
                        continue
                    self.sock = sock
                    opened.append(self)
                    return sock
                raise failure

        return Watched


def send(delivery: Delivery, deadline: Deadline) -> None:
    """Send one message to the destination's address before ``deadline``."""
    message = EmailMessage(
        subject=delivery.subject,
        body=delivery.body,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[delivery.destination.target],
        headers={"X-Idempotency-Key": delivery.key},
    )
    where = f"mail server {settings.EMAIL_HOST}:{settings.EMAIL_PORT}"
    if settings.EMAIL_BACKEND != SMTP_BACKEND:
        try:
            message.send(fail_silently=False)
        except BadHeaderError as exc:
            raise PermanentError(f"invalid e-mail header: {exc}", "failed: invalid e-mail header") from exc
        return
    fired = threading.Event()
    opened: list[smtplib.SMTP] = []
    backend = _WatchedBackend(fired, opened, deadline, timeout=min(settings.EMAIL_TIMEOUT, deadline.remaining()))

    def expire() -> None:
        fired.set()
        for connection in opened:
            # connection.sock: after STARTTLS it is the TLS socket, which the shutdown must reach.
            sock = getattr(connection, "sock", None)
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    watchdog = threading.Timer(deadline.remaining(), expire)
    watchdog.daemon = True
    watchdog.start()
    try:
        message.connection = backend
        message.send(fail_silently=False)
    except BadHeaderError as exc:
        raise PermanentError(f"invalid e-mail header: {exc}", "failed: invalid e-mail header") from exc
    except smtplib.SMTPRecipientsRefused as exc:
        raise PermanentError(
            f"{where} refused the recipient", "failed: the address was refused", answered=True
        ) from exc
    except (smtplib.SMTPException, OSError) as exc:
        if fired.is_set() or isinstance(exc, DeadlineExceededError):
            raise TransientError(f"{where}: no answer before the deadline", f"failed: {where} timed out") from exc
        code = getattr(exc, "smtp_code", 0)
        if isinstance(code, int) and 500 <= code < 600 and not isinstance(exc, smtplib.SMTPServerDisconnected):
            raise PermanentError(
                f"{where}: {code}", f"failed: the mail server refused the message ({code})", answered=True
            ) from exc
        raise TransientError(
            f"{where}: {type(exc).__name__} {redact_text(str(exc))[:200]}", "failed: the mail server is unavailable"
        ) from exc
    finally:
        watchdog.cancel()
        with contextlib.suppress(smtplib.SMTPException, OSError):
            backend.close()
