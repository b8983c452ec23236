"""Which addresses outgoing requests may reach (pure, no I/O).

Every outgoing request (webhooks, OAuth2 token requests, subscription endpoints, alerts)
goes through ``TargetPolicy``: a URL's scheme and IP-literal host are checked before the
request, names through the resolver (``deliver/client.py``) with ``refusal`` on each answer.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import unquote

from yarl import URL

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

REFUSED_HINT = (
    "outgoing requests may not reach private or reserved addresses (set "
    "HOOKSTREAM_ALLOW_PRIVATE_TARGETS=true, or list the network in "
    "HOOKSTREAM_ALLOWED_TARGET_NETWORKS, to allow it)"
)


def _v4(*pairs: tuple[str, str]) -> tuple[tuple[ipaddress.IPv4Network, str], ...]:
    return tuple((ipaddress.IPv4Network(n), why) for n, why in pairs)


def _v6(*pairs: tuple[str, str]) -> tuple[tuple[ipaddress.IPv6Network, str], ...]:
    return tuple((ipaddress.IPv6Network(n), why) for n, why in pairs)


# Every category is listed on purpose rather than left to ``is_global``, whose answers have
# changed between Python releases; ``is_global`` remains a backstop for the rest of IANA's
# special-purpose registries.
REFUSED_V4 = _v4(
    ("0.0.0.0/8", "an unspecified ('this network') address"),
    ("10.0.0.0/8", "a private address"),
    ("100.64.0.0/10", "a shared (carrier-grade NAT) address"),
    ("127.0.0.0/8", "a loopback address"),
    ("169.254.0.0/16", "a link-local address (the cloud metadata service lives here)"),
    ("172.16.0.0/12", "a private address"),
    ("192.0.0.0/24", "an IETF protocol assignment address"),
    ("192.0.2.0/24", "a documentation address"),
    ("192.88.99.0/24", "a 6to4 relay anycast address"),
    ("192.168.0.0/16", "a private address"),
    ("198.18.0.0/15", "a benchmarking address"),
    ("198.51.100.0/24", "a documentation address"),
    ("203.0.113.0/24", "a documentation address"),
    ("224.0.0.0/4", "a multicast address"),
    ("255.255.255.255/32", "the broadcast address"),
    ("240.0.0.0/4", "a reserved address"),
)
REFUSED_V6 = _v6(
    ("::/128", "the unspecified address"),
    ("::1/128", "a loopback address"),
    # IPv4-compatible addresses are deprecated (RFC 4291) and only ever reach the IPv4 inside.
    ("::/96", "an IPv4-compatible address"),
    ("64:ff9b:1::/48", "a local-use NAT64 address"),
    ("100::/64", "a discard-only address"),
    ("2001::/32", "a Teredo tunnel address"),
    ("2001:2::/48", "a benchmarking address"),
    ("2001:db8::/32", "a documentation address"),
    ("3fff::/20", "a documentation address"),
    ("fc00::/7", "a unique-local (private) address"),
    ("fe80::/10", "a link-local address"),
    ("fec0::/10", "a site-local address"),
    ("ff00::/8", "a multicast address"),
)
# IPv6 addresses that carry an IPv4 address in their last 32 bits, which the connection
# reaches in the end: IPv4-mapped, IPv4-translated (SIIT) and NAT64 (RFC 6052).
EMBEDDING_V4 = tuple(
    ipaddress.IPv6Network(n) for n in ("::ffff:0:0/96", "::ffff:0:0:0/96", "64:ff9b::/96")
)
SIX_TO_FOUR = ipaddress.IPv6Network("2002::/16")


def embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one leads to (mapped, translated, NAT64, 6to4), if any."""
    if any(ip in net for net in EMBEDDING_V4):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in SIX_TO_FOUR:
        return ipaddress.IPv4Address((int(ip) >> 80) & 0xFFFFFFFF)
    return None


def _category(ip: IPAddress) -> str | None:
    """Why ``ip`` is not a public unicast address, or None when it is one."""
    if isinstance(ip, ipaddress.IPv4Address):
        for v4net, why in REFUSED_V4:
            if ip in v4net:
                return why
    else:
        inner = embedded_v4(ip)
        if inner is not None:
            behind = _category(inner)
            return None if behind is None else f"{behind} ({inner}) in an IPv6 form"
        for v6net, why in REFUSED_V6:
            if ip in v6net:
                return why
    if ip.is_multicast:
        return "a multicast address"
    if not ip.is_global:
        return "a private or reserved address"
    return None


def _allowed(ip: IPAddress, networks: Iterable[IPNetwork]) -> bool:
    candidates: list[IPAddress] = [ip]
    if isinstance(ip, ipaddress.IPv6Address) and (inner := embedded_v4(ip)) is not None:
        candidates.append(inner)  # the host the connection reaches in the end
    return any(c.version == n.version and c in n for c in candidates for n in networks)


def as_address(address: str | IPAddress) -> IPAddress | None:
    """An address as given by a resolver (an IPv6 zone is dropped), or None when it is none."""
    if not isinstance(address, str):
        return address
    try:
        return ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return None


def refusal(
    address: str | IPAddress,
    *,
    allow_private: bool = False,
    allowed_networks: Iterable[IPNetwork] = (),
) -> str | None:
    """Why outgoing requests may not reach ``address`` (e.g. "a loopback address"), or None."""
    ip = as_address(address)
    if ip is None:
        return "not an IP address"
    if allow_private:
        return None
    why = _category(ip)
    if why is None or _allowed(ip, allowed_networks):
        return None
    return why


def may_reach(
    address: str | IPAddress,
    *,
    allow_private: bool = False,
    allowed_networks: Iterable[IPNetwork] = (),
) -> bool:
    """True when outgoing requests may reach ``address`` under these settings."""
    return refusal(address, allow_private=allow_private,
                   allowed_networks=allowed_networks) is None


def is_public(address: str) -> bool:
    """True for a globally routable unicast address; False for loopback, private, link-local,
    multicast, reserved and unspecified ones, and for IPv6 forms that carry such an IPv4.
    """
    return refusal(address) is None


_DIGITS = {10: frozenset("0123456789"), 8: frozenset("01234567"),
           16: frozenset("0123456789abcdefABCDEF")}


def _ipv4_number(part: str) -> int | None:
    # The WHATWG URL standard's IPv4 number parser, which browsers and libc's inet_aton agree on.
    base = 10
    if part[:2] in ("0x", "0X"):
        part, base = part[2:], 16
    elif len(part) > 1 and part[0] == "0":
        part, base = part[1:], 8
    if part == "":
        return 0
    # Checked by hand: int() would also take "+1", " 1", "1_0" and non-ASCII digits.
    if not set(part) <= _DIGITS[base]:
        return None
    return int(part, base)


def parse_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """An IPv4 host in any form libc and browsers accept (``127.1``, ``2130706433``,
    ``0177.0.0.1``, ``0x7f.0.0.1``, a trailing dot), or None when it is not one."""
    parts = host.split(".")
    if parts[-1] == "" and len(parts) > 1:
        parts.pop()
    if not 1 <= len(parts) <= 4 or "" in parts:
        return None
    numbers = [_ipv4_number(p) for p in parts]
    if any(n is None for n in numbers):
        return None
    values = [n for n in numbers if n is not None]
    if any(n > 255 for n in values[:-1]) or values[-1] >= 256 ** (5 - len(values)):
        return None
    result = values[-1]
    for i, n in enumerate(values[:-1]):
        result += n << (8 * (3 - i))
    return ipaddress.IPv4Address(result)


def parse_host(host: str) -> IPAddress | None:
    """The address an IP-literal URL host means (brackets, percent-encoding, an IPv6 zone and
    legacy IPv4 forms are understood), or None for a name."""
    text = unquote(host).strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if ":" in text:
        try:
            return ipaddress.IPv6Address(text.split("%", 1)[0])
        except ValueError:
            return None
    return parse_ipv4(text)


def is_ip_literal(host: str) -> bool:
    """True when ``host`` is an IP address in some form rather than a name."""
    return parse_host(host) is not None


def url_hosts(url: str) -> set[str]:
    """The host of ``url`` as aiohttp will connect to it (yarl's parsing: IDNA and Unicode
    digits normalised), decoded and raw; empty when there is none."""
    try:
        parsed = URL(url)
    except (ValueError, TypeError):
        return set()
    return {h for h in (parsed.host, parsed.raw_host) if h}


@dataclass(frozen=True, slots=True)
class TargetPolicy:
    """The deployment's rule for where outgoing requests may go."""

    allow_private: bool = False
    allowed_networks: tuple[IPNetwork, ...] = ()
    https_only: bool = False

    def address_refusal(self, address: str | IPAddress) -> str | None:
        """Why ``address`` may not be reached, or None."""
        return refusal(address, allow_private=self.allow_private,
                       allowed_networks=self.allowed_networks)

    def url_refusal(self, url: str) -> str | None:
        """Why ``url`` may not be requested, judged without DNS (names are checked by the
        resolver when connecting), or None."""
        scheme = url.partition(":")[0].strip().lower()
        if self.https_only and scheme != "https":
            return (f"{scheme or 'this'}:// URLs are refused: "
                    "HOOKSTREAM_HTTPS_ONLY=true allows only https://")
        hosts = url_hosts(url)
        if not hosts:
            return "the URL has no host"
        for host in sorted(hosts):
            ip = parse_host(host)
            why = None if ip is None else self.address_refusal(ip)
            if ip is not None and why is not None:
                shown = str(ip) if str(ip) == host.strip("[]") else f"{host} ({ip})"
                return f"{shown} is {why}; {REFUSED_HINT}"
        return None
