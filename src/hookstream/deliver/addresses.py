"""Which addresses outgoing requests may reach (pure, no I/O)."""

from __future__ import annotations

import ipaddress

# IPv6 prefixes whose last 32 bits are an IPv4 address that a gateway or translator may
# reach: IPv4-compatible (deprecated), IPv4-translated (SIIT) and NAT64 (RFC 6052, 8215).
_EMBEDDING_V4 = tuple(
    ipaddress.IPv6Network(n)
    for n in ("::/96", "::ffff:0:0:0/96", "64:ff9b::/96", "64:ff9b:1::/48")
)


def is_public(address: str) -> bool:
    """True for a globally routable unicast address; False for loopback, private, link-local,
    multicast, reserved and unspecified ones, and for IPv6 forms that carry such an IPv4.
    """
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        mapped = ip.ipv4_mapped or ip.sixtofour
        if mapped is not None:
            return is_public(str(mapped))
        if ip.teredo is not None:
            return is_public(str(ip.teredo[1]))
        if any(ip in net for net in _EMBEDDING_V4):
            return is_public(str(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)))
    return ip.is_global and not ip.is_multicast


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    return True
