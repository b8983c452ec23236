"""Which addresses outgoing requests may reach (pure, no I/O)."""

from __future__ import annotations

import ipaddress


def is_public(address: str) -> bool:
    """True for a globally routable unicast address; False for loopback, private, link-local,
    multicast, reserved and unspecified ones, and for IPv4 hidden in IPv6 forms that map to them.
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
    return ip.is_global and not ip.is_multicast


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    return True
