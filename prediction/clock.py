"""Bar arithmetic shared by the hook and live inference (no heavy imports: the hook runs in every worker)."""

from analytics.models import INTERVAL_SECONDS


def last_closed_bar(interval: str, end_ms: int) -> int:
    """open_time (ms) of the last bar of ``interval`` fully before ``end_ms``: the bar holding ``end_ms`` is
    still open, so the one before it is the newest closed bar."""
    step = INTERVAL_SECONDS[interval] * 1000
    return (end_ms // step) * step - step
