"""Which addresses a daemon offers to peers, and in which order a dialler tries a peer's addresses (pure: the
caller passes the machine's interface addresses).

A daemon listening on a wildcard (`/ip4/0.0.0.0/tcp/P`) is reachable at each interface's address; those are
what it announces, loopback only when it has nothing else (one machine: the tests, the demo). `--announce`
replaces the list outright (a port forward, a public IP the machine does not see). Relay circuit addresses
(`<relay>/p2p/R/p2p-circuit/p2p/ME`) come last: a direct path is tried first.

A dialler orders what a peer announced: addresses in the scope it can use first (loopback only for a peer on
this machine — a loopback address offered by another machine points at the dialler's own), then the
private and public ones, circuits last. Nothing in a heartbeat is trusted: unparsable addresses are dropped,
the count is bounded.
"""

from __future__ import annotations

import ipaddress

MAX_ANNOUNCED = 16  # addresses in one heartbeat (heartbeat.py slices to this too)
LOOPBACK, PRIVATE, PUBLIC, CIRCUIT = "loopback", "private", "public", "circuit"
ORDER = {LOOPBACK: 0, PRIVATE: 1, PUBLIC: 2, CIRCUIT: 3}
WILDCARDS = ("0.0.0.0", "::")


def is_circuit(addr: str) -> bool:
    return "/p2p-circuit" in addr


def ip_of(addr: str) -> str | None:
    """The IP of an /ip4/ or /ip6/ multiaddr (the first component), or None."""
    parts = addr.split("/")
    if len(parts) > 2 and parts[1] in ("ip4", "ip6"):
        return parts[2]
    return None


def scope(addr: str) -> str | None:
    """loopback | private | public | circuit; None for an address no dialler can use (unparsable, wildcard,
    multicast, unspecified)."""
    if is_circuit(addr):
        return CIRCUIT
    if addr.split("/")[1:2] in (["dns"], ["dns4"], ["dns6"]):  # a name (--announce /dns4/host.example/...)
        return PUBLIC
    ip = ip_of(addr)
    if ip is None:
        return None
    try:
        a = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if a.is_unspecified or a.is_multicast or a.is_reserved:
        return None
    if a.is_loopback:
        return LOOPBACK
    if a.is_private or a.is_link_local or not a.is_global:  # RFC 1918, CGNAT 100.64/10, link-local
        return PRIVATE
    return PUBLIC


def with_peer(addr: str, peer_id: str) -> str:
    return addr if addr.endswith(f"/p2p/{peer_id}") else f"{addr}/p2p/{peer_id}"


def expand(listening: list[str], local_ips: list[str]) -> list[str]:
    """Listening addresses with each wildcard replaced by every local address of its family."""
    out: list[str] = []
    for a in listening:
        ip = ip_of(a)
        if ip in WILDCARDS:
            fam = "ip4" if ip == "0.0.0.0" else "ip6"
            rest = a.split("/", 3)[3]
            out += [f"/{fam}/{x}/{rest}" for x in local_ips if (":" in x) == (fam == "ip6")]
        else:
            out.append(a)
    return list(dict.fromkeys(out))


def announced(listening: list[str], local_ips: list[str], announce: list[str], circuits: list[str],
              peer_id: str) -> list[str]:
    """What this daemon offers peers: `announce` if given (["none"]: no direct address), else its expanded
    listening addresses without loopback unless that is all it has; then its relay circuits. Each ends in
    /p2p/<peer_id>."""
    if announce == ["none"]:  # reachable only through relays (behind a NAT whose outside address is unknown)
        direct = []
    elif announce:
        direct = list(announce)
    else:
        direct = [a for a in expand(listening, local_ips) if scope(a) is not None]
        outside = [a for a in direct if scope(a) != LOOPBACK]
        direct = outside or direct
    out = [with_peer(a, peer_id) for a in direct] + [with_peer(c, peer_id) for c in circuits]
    return list(dict.fromkeys(out))[:MAX_ANNOUNCED]


def dial_order(addrs: list[str], same_machine: bool = False) -> list[str]:
    """The addresses of one peer a dialler tries, in order: usable scopes only (loopback only when the peer
    is on this machine, i.e. offers nothing else, or `same_machine`), direct before circuits, announced order
    within a scope. Bounded to MAX_ANNOUNCED."""
    scoped = [(scope(a), i, a) for i, a in enumerate(addrs[:MAX_ANNOUNCED])]
    scoped = [(s, i, a) for s, i, a in scoped if s is not None]
    if not same_machine and any(s not in (LOOPBACK, CIRCUIT) for s, _, _ in scoped):
        scoped = [x for x in scoped if x[0] != LOOPBACK]
    return [a for _, _, a in sorted(scoped, key=lambda x: (x[0] == CIRCUIT, x[1]))]


def relay_of(circuit: str) -> str:
    """The relay's own address (`/.../p2p/R`) in a circuit address."""
    return circuit.split("/p2p-circuit", 1)[0]


def first_addr(addrs: list[str]) -> str:
    """The address a ready line shows: the first announced, or why there is none yet."""
    return addrs[0] if addrs else "(no address yet: reachable through a relay once it grants a slot)"
