"""Which IP addresses an input fetch may connect to: public unicast ones only.

IPv6 forms that carry an IPv4 address (v4-mapped `::ffff:a.b.c.d`, NAT64
`64:ff9b::/96`, 6to4 `2002::/16`, Teredo) are judged by the IPv4 address inside as
well, so `::ffff:127.0.0.1` is loopback however it is spelled.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

IPAddress = IPv4Address | IPv6Address

# Checked first and by name, so the message says what the address is.
NAMED_NETWORKS: tuple[tuple[str, tuple[IPv4Network | IPv6Network, ...]], ...] = (
    (
        "cloud metadata",
        (IPv4Network("169.254.169.254/32"), IPv6Network("fd00:ec2::254/128")),
    ),
    ("carrier-grade NAT", (IPv4Network("100.64.0.0/10"),)),
    ("unique local", (IPv6Network("fc00::/7"),)),
    ("link-local", (IPv4Network("169.254.0.0/16"), IPv6Network("fe80::/10"))),
)
NAT64 = IPv6Network("64:ff9b::/96")


def refusal_reason(address: str) -> str | None:
    """Why a fetch must not connect to `address` ('loopback', 'private', ...), or None."""
    try:
        ip = ip_address(address)
    except ValueError:
        return "malformed"
    # The IPv4 inside first: Python calls all of ::ffff:0:0/96 'private', which hides why.
    for candidate in (*_embedded_ipv4(ip), ip):
        reason = _reason(candidate)
        if reason is not None:
            return reason
    return None


def _embedded_ipv4(ip: IPAddress) -> list[IPv4Address]:
    if not isinstance(ip, IPv6Address):
        return []
    found = [ip.ipv4_mapped, ip.sixtofour]
    if ip.teredo is not None:
        found.append(ip.teredo[1])
    if ip in NAT64:
        found.append(IPv4Address(int(ip) & 0xFFFFFFFF))
    return [v4 for v4 in found if v4 is not None]


def _reason(ip: IPAddress) -> str | None:
    for name, networks in NAMED_NETWORKS:
        if any(ip.version == net.version and ip in net for net in networks):
            return name
    flags = (
        ("loopback", ip.is_loopback),
        ("unspecified", ip.is_unspecified),
        ("multicast", ip.is_multicast),
        ("link-local", ip.is_link_local),
        ("reserved", ip.is_reserved),
        ("private", ip.is_private),
        ("non-public", not ip.is_global),
    )
    return next((name for name, hit in flags if hit), None)
