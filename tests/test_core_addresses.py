"""Which addresses outgoing webhook requests may reach."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from hookstream.pipeline.deliver.addresses import (
    REFUSED_V4,
    REFUSED_V6,
    IPAddress,
    IPNetwork,
    TargetPolicy,
    is_ip_literal,
    is_public,
    may_reach,
    parse_host,
    parse_ipv4,
    refusal,
)

NOT_PUBLIC = [
    "127.0.0.1",
    "127.1.2.3",
    "10.0.0.1",
    "10.255.255.255",
    "172.16.0.1",
    "172.31.255.254",
    "192.168.0.1",
    "192.168.1.1",
    "169.254.169.254",  # cloud metadata
    "0.0.0.0",
    "255.255.255.255",
    "100.64.0.1",  # CGNAT
    "224.0.0.1",  # multicast
    "239.255.255.250",
    "192.0.2.1",  # documentation
    "198.18.0.1",  # benchmarking
    "240.0.0.1",  # reserved
    "::1",
    "::",
    "fe80::1",
    "fe80::1%eth0",
    "fc00::1",
    "fd12:3456::1",
    "ff02::1",  # multicast
    "2001:db8::1",  # documentation
    "::ffff:127.0.0.1",  # IPv4-mapped loopback
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "2002:7f00:1::",  # 6to4 of 127.0.0.1
    "2002:a00:1::",  # 6to4 of 10.0.0.1
]

PUBLIC = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.216.34",
    "172.32.0.1",  # just outside 172.16.0.0/12
    "100.128.0.1",  # just outside 100.64.0.0/10
    "2606:4700:4700::1111",
    "2001:4860:4860::8888",
    "::ffff:8.8.8.8",
]

GARBAGE = ["garbage", "", "example.com", "localhost", "256.1.1.1", "1.2.3", "[::1]", " 8.8.8.8"]


@pytest.mark.parametrize("address", NOT_PUBLIC)
def test_private_and_special_addresses_are_not_public(address: str) -> None:
    assert is_public(address) is False


@pytest.mark.parametrize("address", PUBLIC)
def test_global_unicast_addresses_are_public(address: str) -> None:
    assert is_public(address) is True


@pytest.mark.parametrize("address", GARBAGE)
def test_garbage_is_not_public(address: str) -> None:
    assert is_public(address) is False


@pytest.mark.parametrize("address", ["64:ff9b::a00:1", "64:ff9b::7f00:1", "::127.0.0.1"])
def test_other_ipv6_forms_of_private_ipv4_are_not_public(address: str) -> None:
    assert is_public(address) is False


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "8.8.8.8", "::1", "[::1]", "[2606:4700:4700::1111]", "fe80::1%eth0"]
)
def test_ip_literals(host: str) -> None:
    assert is_ip_literal(host) is True


@pytest.mark.parametrize(
    "host", ["example.com", "localhost", "", "256.0.0.1", "1.2.3.4.5", "127.0.0.1.nip.io", "[]"]
)
def test_names_are_not_ip_literals(host: str) -> None:
    assert is_ip_literal(host) is False


# --- the refusal rule, its settings and legacy host forms ---------------------------------

# No example database on disk: these tests are pure and other checkouts share the directory.
hypothesis_settings.register_profile("addresses", database=None, deadline=None)
PROPERTY = hypothesis_settings.get_profile("addresses")

V4_NETS = [net for net, _ in REFUSED_V4]
V6_NETS = [net for net, _ in REFUSED_V6]


def in_network(net: IPNetwork) -> st.SearchStrategy[IPAddress]:
    """Any address of ``net``."""
    first, last = int(net.network_address), int(net.broadcast_address)
    make = ipaddress.IPv4Address if net.version == 4 else ipaddress.IPv6Address
    return st.integers(first, last).map(make)


def refused_v4() -> st.SearchStrategy[ipaddress.IPv4Address]:
    return st.sampled_from(V4_NETS).flatmap(in_network)  # type: ignore[arg-type]


def public_v4() -> st.SearchStrategy[ipaddress.IPv4Address]:
    return st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address).filter(
        lambda ip: ip.is_global and not any(ip in n for n in V4_NETS)
    )


def v6_forms(ip: ipaddress.IPv4Address) -> dict[str, ipaddress.IPv6Address]:
    """The IPv6 addresses that lead to ``ip``."""
    n = int(ip)
    return {
        "mapped": ipaddress.IPv6Address(0xFFFF << 32 | n),
        "translated": ipaddress.IPv6Address(0xFFFF << 48 | n),
        "nat64": ipaddress.IPv6Address(int(ipaddress.IPv6Address("64:ff9b::")) | n),
        "6to4": ipaddress.IPv6Address(0x2002 << 112 | n << 80 | 1),
        "compatible": ipaddress.IPv6Address(n),
    }


@pytest.mark.parametrize(("net", "why"), REFUSED_V4 + REFUSED_V6, ids=str)
def test_each_refused_network_is_refused_at_both_ends_with_its_reason(
    net: IPNetwork, why: str
) -> None:
    table = REFUSED_V4 if net.version == 4 else REFUSED_V6
    for ip in (net.network_address, net.broadcast_address):
        # The first network of the table that holds the address names the reason.
        assert refusal(ip) == next(w for n, w in table if ip in n)


@PROPERTY
@given(st.sampled_from(V4_NETS + V6_NETS).flatmap(in_network))
def test_every_address_of_a_refused_network_is_refused(ip: IPAddress) -> None:
    assert refusal(ip) is not None
    assert not may_reach(ip)
    assert not is_public(str(ip))


@PROPERTY
@given(refused_v4())
def test_a_refused_ipv4_is_refused_in_every_ipv6_form(ip: ipaddress.IPv4Address) -> None:
    for form, v6 in v6_forms(ip).items():
        assert refusal(v6) is not None, (form, v6)


@PROPERTY
@given(public_v4())
def test_a_public_ipv4_is_reachable_mapped_translated_through_nat64_and_6to4(
    ip: ipaddress.IPv4Address,
) -> None:
    assert may_reach(ip)
    forms = v6_forms(ip)
    for form in ("mapped", "translated", "nat64", "6to4"):
        assert may_reach(forms[form]), (form, forms[form])
    # IPv4-compatible addresses are deprecated: refused whatever they carry.
    assert not may_reach(forms["compatible"])


@PROPERTY
@given(st.one_of(
    st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address),
    st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address),
))
def test_allow_private_lifts_every_refusal(ip: IPAddress) -> None:
    assert refusal(ip, allow_private=True) is None


@PROPERTY
@given(st.data(), st.sampled_from(V4_NETS + V6_NETS))
def test_an_allowed_network_lifts_itself_and_nothing_else(
    data: st.DataObject, net: IPNetwork
) -> None:
    inside = data.draw(in_network(net))
    assert refusal(inside, allowed_networks=[net]) is None
    others = [n for n in V4_NETS + V6_NETS if n.version == net.version and not n.overlaps(net)]
    if others:
        outside = data.draw(st.sampled_from(others).flatmap(in_network))
        assert refusal(outside, allowed_networks=[net]) is not None


def test_an_allowed_ipv4_network_covers_its_ipv6_forms_only() -> None:
    allowed = [ipaddress.ip_network("10.1.0.0/16")]
    assert may_reach("10.1.2.3", allowed_networks=allowed)
    assert may_reach("::ffff:10.1.2.3", allowed_networks=allowed)
    assert may_reach("64:ff9b::a01:203", allowed_networks=allowed)
    for other in ("10.2.0.1", "::ffff:10.2.0.1", "127.0.0.1", "169.254.169.254", "::1"):
        assert not may_reach(other, allowed_networks=allowed), other


@pytest.mark.parametrize(("address", "words"), [
    ("100.64.0.1", "shared"), ("100.127.255.255", "shared"), ("192.0.0.8", "IETF"),
    ("198.19.255.255", "benchmarking"), ("198.51.100.7", "documentation"),
    ("203.0.113.7", "documentation"), ("0.1.2.3", "unspecified"), ("240.0.0.1", "reserved"),
    ("255.255.255.255", "broadcast"), ("169.254.169.254", "metadata"), ("::", "unspecified"),
    ("::1", "loopback"), ("fc00::1", "unique-local"), ("fe80::1%eth0", "link-local"),
    ("ff02::1", "multicast"), ("2001:db8::1", "documentation"), ("2001::1", "Teredo"),
    ("64:ff9b:1::1", "NAT64"), ("::ffff:127.0.0.1", "loopback address (127.0.0.1)"),
    ("64:ff9b::a9fe:a9fe", "169.254.169.254"),
    ("2002:c0a8:101::1", "private address (192.168.1.1)"),
    ("::127.0.0.1", "IPv4-compatible"),
])
def test_refusals_say_why(address: str, words: str) -> None:
    reason = refusal(address)
    assert reason is not None and words in reason


def test_what_is_not_an_address_is_refused() -> None:
    assert refusal("localhost") == "not an IP address"
    assert refusal("localhost", allow_private=True) == "not an IP address"


# Legacy IPv4 forms: each means 127.0.0.1 to libc and browsers.
LOOPBACK_FORMS = [
    "127.0.0.1", "127.1", "127.0.1", "2130706433", "0177.0.0.1", "0x7f.0.0.1", "0X7F.0.0.1",
    "0x7f000001", "017700000001", "0x7f.1", "127.0.0.1.", "%31%32%37.0.0.1", "0177.0x0.0.01",
]


@pytest.mark.parametrize("host", LOOPBACK_FORMS)
def test_legacy_ipv4_forms_are_the_address_they_mean(host: str) -> None:
    assert parse_host(host) == ipaddress.IPv4Address("127.0.0.1")
    assert is_ip_literal(host)


@pytest.mark.parametrize(("host", "expected"), [
    ("0", "0.0.0.0"), ("0x", "0.0.0.0"), ("4294967295", "255.255.255.255"),
    ("1.2.3", "1.2.0.3"), ("[::ffff:127.0.0.1]", "::ffff:7f00:1"), ("[::1]", "::1"),
    ("[fe80::1%25eth0]", "fe80::1"), ("::127.0.0.1", "::7f00:1"),
])
def test_other_literal_forms(host: str, expected: str) -> None:
    assert str(parse_host(host)) == expected


@pytest.mark.parametrize("host", [
    "4294967296", "256.0.0.1", "1.2.3.4.5", "08.0.0.1", "0x1g.0.0.1", "1e1", "+1.2.3.4",
    "1_0.0.0.1", "١٢٧.0.0.1", "example.com", "127.0.0.1.nip.io", "[::1", "",
    "1..2", ".1",
])
def test_names_and_nonsense_are_no_address(host: str) -> None:
    assert parse_host(host) is None


def ipv4_spellings(n: int) -> st.SearchStrategy[str]:
    """The ways libc and browsers let one write the IPv4 address ``n``."""
    octets = list(n.to_bytes(4, "big"))

    def number(value: int) -> st.SearchStrategy[str]:
        return st.sampled_from([str(value), hex(value), "0" + oct(value)[2:], hex(value).upper()
                                .replace("0X", "0x")])

    shapes = [
        octets,
        [octets[0], octets[1], octets[2] << 8 | octets[3]],
        [octets[0], octets[1] << 16 | octets[2] << 8 | octets[3]],
        [n],
    ]
    return st.sampled_from(shapes).flatmap(
        lambda parts: st.tuples(*(number(p) for p in parts)).map(".".join)
    )


@PROPERTY
@given(st.integers(0, 2**32 - 1).flatmap(lambda n: st.tuples(st.just(n), ipv4_spellings(n))))
def test_every_legacy_spelling_parses_as_libc_reads_it(case: tuple[int, str]) -> None:
    n, spelling = case
    assert parse_ipv4(spelling) == ipaddress.IPv4Address(n)
    # The resolver's libc agrees, so a name lookup cannot reach another address.
    assert socket.inet_aton(spelling) == n.to_bytes(4, "big")


def test_url_refusal_judges_ip_literals_as_aiohttp_parses_them() -> None:
    strict = TargetPolicy()
    for url in ("http://127.1:8080/x", "https://[::ffff:127.0.0.1]/", "http://0/",
                "http://１２７.０.０.１/",  # yarl (aiohttp) reads Unicode digits as 127.0.0.1
                "http://127。0。0。1/", "http://[fe80::1%25eth0]:80/"):
        reason = strict.url_refusal(url)
        assert reason is not None and "private" in reason, url
        assert "HOOKSTREAM_ALLOW_PRIVATE_TARGETS" in reason
    for url in ("http://example.com/", "https://8.8.8.8/", "http://localhost:1/"):
        assert strict.url_refusal(url) is None, url  # names are judged when resolved
    assert strict.url_refusal("http:///nohost") is not None
    assert TargetPolicy(allow_private=True).url_refusal("http://127.0.0.1/") is None


def test_https_only_refuses_every_other_scheme() -> None:
    policy = TargetPolicy(allow_private=True, https_only=True)
    reason = policy.url_refusal("http://example.com/")
    assert reason is not None and "HOOKSTREAM_HTTPS_ONLY" in reason
    assert policy.url_refusal("HTTP://example.com/") is not None
    assert policy.url_refusal("https://example.com/") is None
