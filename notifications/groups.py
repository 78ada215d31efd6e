"""Channel-layer group names of the notifications app."""

from __future__ import annotations


def user_group(user_id: int) -> str:
    """The group a user's open pages join for their toasts."""
    return f"notify.user.{int(user_id)}"
