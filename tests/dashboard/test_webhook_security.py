"""The webhook SSRF guard (notifications.targets): which addresses and ports a webhook may name. Destinations
are checked with it when saved (tests/dashboard/test_alerts_api.py); sending is the notifications senders' part."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from notifications.targets import UnsafeTargetError, check_webhook_target, is_public_address


@pytest.fixture
def strict(settings: Any) -> None:
    settings.ALERT_WEBHOOK_ALLOW_PRIVATE = False
    settings.ALERT_WEBHOOK_ALLOWED_PORTS = [80, 443]


# --------------------------------------------------------------------------------------------- finding 7: addresses
@pytest.mark.parametrize(
    "url",
    [
        "http://100.64.0.1/hook",  # shared address space (carrier-grade NAT)
        "http://100.100.100.200/latest/meta-data/",  # Alibaba Cloud metadata
        "http://[fec0::1]/hook",  # IPv6 site-local
        "http://[2002:a00:1::1]/hook",  # 6to4 around 10.0.0.1
        "http://[2002:5db8:d822::1]/hook",  # 6to4, even around a public IPv4 address
        "http://[2001:0:4136:e378:8000:63bf:f5ff:fffe]/hook",  # Teredo
        "http://[64:ff9b::a9fe:a9fe]/hook",  # NAT64 around 169.254.169.254
        "http://[::ffff:a9fe:a9fe]/hook",  # IPv4-mapped metadata address
        "http://[fd00:ec2::254]/hook",  # AWS IPv6 metadata
        "http://192.0.0.8/hook",  # IETF protocol assignments
        "http://198.18.0.1/hook",  # benchmarking
        "http://[ff02::1]/hook",  # IPv6 multicast
    ],
)
@pytest.mark.usefixtures("strict")
def test_non_global_addresses_refused(url: str) -> None:
    with pytest.raises(UnsafeTargetError, match="not a public address"):
        check_webhook_target(url)


@pytest.mark.usefixtures("strict")
def test_global_unicast_allowed_including_nat64_of_a_public_address() -> None:
    assert check_webhook_target("https://93.184.216.34/hook") == ["93.184.216.34"]
    assert check_webhook_target("https://[2606:4700::1111]/hook") == ["2606:4700::1111"]
    assert is_public_address(ipaddress.ip_address("64:ff9b::5db8:d822"))  # NAT64 of 93.184.216.34


# --------------------------------------------------------------------------------------------- finding 7: ports
@pytest.mark.usefixtures("strict")
def test_only_ports_80_and_443_unless_widened(settings: Any) -> None:
    for url in ("http://93.184.216.34:8080/hook", "https://93.184.216.34:6379/", "http://93.184.216.34:22/"):
        with pytest.raises(UnsafeTargetError, match="ALERT_WEBHOOK_ALLOWED_PORTS"):
            check_webhook_target(url)
    assert check_webhook_target("http://93.184.216.34:80/hook") == ["93.184.216.34"]
    settings.ALERT_WEBHOOK_ALLOWED_PORTS = [443, 8443]
    assert check_webhook_target("https://93.184.216.34:8443/hook") == ["93.184.216.34"]
