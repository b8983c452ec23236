"""Which addresses outgoing webhook requests may reach."""

from __future__ import annotations

import pytest

from hookstream.deliver.addresses import is_ip_literal, is_public

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
    "host", ["example.com", "localhost", "", "256.0.0.1", "1.2.3", "127.0.0.1.nip.io", "[]"]
)
def test_names_are_not_ip_literals(host: str) -> None:
    assert is_ip_literal(host) is False
