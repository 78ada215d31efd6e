"""What every channel shares: the errors an attempt raises and the deadline it must keep.

A channel is a module with ``send(delivery, deadline) -> None`` and ``target(delivery) -> str``. ``send`` returns when
the receiver accepted the message and raises :class:`TransientError` (retry later) or :class:`PermanentError` (give
up) otherwise; it never runs past ``deadline`` (a :class:`Deadline`). ``target`` names what the circuit breaker
guards (a webhook's host, the SMS API, the SMTP server).
"""

from __future__ import annotations

from notifications.deadline import Deadline, DeadlineExceededError

__all__ = ["Deadline", "DeadlineExceededError", "DeliveryError", "PermanentError", "TransientError", "one_text"]


class DeliveryError(RuntimeError):
    """A failed attempt. ``str(exc)`` is the operator's detail (logged: host, status, never a secret); ``public``
    is what the owner sees in the delivery's ``last_error``."""

    def __init__(self, detail: str, public: str = "") -> None:
        super().__init__(detail)
        self.public = public or detail


class TransientError(DeliveryError):
    """May pass on retry: network error, deadline, HTTP 429 or 5xx. ``retry_after``: the receiver's own wait."""

    def __init__(self, detail: str, public: str = "", retry_after: float | None = None) -> None:
        super().__init__(detail, public)
        self.retry_after = retry_after


class PermanentError(DeliveryError):
    """Retrying cannot fix it: refused target, invalid number or address, HTTP 4xx, channel not configured.

    ``answered``: the target itself gave this answer (an HTTP 4xx, an SMTP 5xx), so it is up: its circuit breaker
    counts it as a success (a half-open probe answered 404 closes it).
    """

    def __init__(self, detail: str, public: str = "", answered: bool = False) -> None:
        super().__init__(detail, public)
        self.answered = answered


def one_text(subject: str, body: str) -> str:
    """Subject and body as one text (SMS, Telegram). Just the body when it already starts with the subject, as
    every alert's does: a message never says the same thing twice (an SMS would pay a segment for it)."""
    if not body:
        return subject
    if body.startswith(subject):
        return body
    return f"{subject}\n{body}"
