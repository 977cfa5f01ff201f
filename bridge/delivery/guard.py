"""SSRF guard: webhooks go only to public addresses, unless an operator allows more.

By default a subscription URL may not reach loopback, private (RFC 1918, ULA),
link-local (cloud metadata services live there: 169.254.169.254), multicast, reserved
or unspecified addresses. ``delivery.allow_networks`` lists networks that are allowed
anyway (an intranet CRM, or 127.0.0.0/8 for a local receiver).

It is enforced twice: when a subscription is created (an IP literal, or a name that
resolves now: a clear 400) and on every delivery, inside the HTTP client's resolver,
so a name that later resolves elsewhere (DNS rebinding) is refused too: the connection
only ever goes to addresses that passed the check.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class SsrfBlocked(OSError):
    """Every address of a host is in a refused range."""


def is_ip(host: str) -> bool:
    """Whether a URL host (brackets removed) is an IP literal, which no resolver sees."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def parse_networks(values: Iterable[str]) -> list[IPNetwork]:
    return [ipaddress.ip_network(v, strict=False) for v in values]


def refusal(addr: str, allow: list[IPNetwork]) -> str | None:
    """Why this address is refused, or None when it may be used."""
    try:
        ip: IPAddress = ipaddress.ip_address(addr.split("%", 1)[0])
    except ValueError:
        return f"{addr} is not an IP address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip in net for net in allow):
        return None
    for kind, bad in (
        ("loopback", ip.is_loopback),
        ("link-local (cloud metadata)", ip.is_link_local),
        ("private", ip.is_private),
        ("multicast", ip.is_multicast),
        ("reserved", ip.is_reserved),
        ("unspecified", ip.is_unspecified),
    ):
        if bad:
            return f"{ip} is a {kind} address"
    return None


async def check_host(host: str, allow: list[IPNetwork], timeout: float = 2.0) -> str | None:
    """Refusal reason for a URL host (None: fine, or cannot be resolved now)."""
    if is_ip(host.strip("[]")):
        return refusal(host.strip("[]"), allow)
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(loop.getaddrinfo(host, None, type=socket.SOCK_STREAM), timeout)
    except (OSError, TimeoutError):
        return None  # not resolvable now: the delivery-time check decides then
    reasons = [refusal(str(info[4][0]), allow) for info in infos]
    if reasons and all(reasons):
        return f"{host} resolves to {reasons[0]}"
    return None


class GuardedResolver(AbstractResolver):
    """aiohttp resolver that drops refused addresses; raises SsrfBlocked if none is left."""

    def __init__(self, allow: list[IPNetwork], inner: AbstractResolver | None = None) -> None:
        self.allow = allow
        self.inner = inner or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self.inner.resolve(host, port, family)
        kept = [r for r in results if refusal(r["host"], self.allow) is None]
        if not kept:
            why = refusal(results[0]["host"], self.allow) if results else "no address"
            raise SsrfBlocked(f"refused by the SSRF guard: {why} (allow it with delivery.allow_networks)")
        return kept

    async def close(self) -> None:
        await self.inner.close()
