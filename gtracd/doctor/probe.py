"""What `gtracd doctor` checks over the network: every bootstrap peer dialled from a throwaway identity, each
keyring anchor asked an empty submission (it answers with its clock), so: reachable, answering, and how far
this device's clock is from it (reports signed with a skewed clock are refused: wire.verifier)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from ..errors import GtracError
from ..identity import Identity, Keystore, peer_id_from_public
from ..net.host import dial, running_host
from ..net.ledgersync import ping
from .checks import FAIL, OK, WARN, Finding

if TYPE_CHECKING:
    from gtracd.config import Settings

MAX_SKEW_S = 60.0  # what a verifier accepts (wire.verifier.Verifier.max_skew_s)
WARN_SKEW_S = 5.0
TIMEOUT_S = 8.0


def _peer_of(addr: str) -> str | None:
    parts = addr.rstrip("/").split("/")
    return parts[parts.index("p2p") + 1] if "p2p" in parts and parts.index("p2p") + 1 < len(parts) else None


async def anchors(s: Settings) -> list[Finding]:
    keyring = {peer_id_from_public(pub) for pub in Keystore(s.keystore_path).anchors().values()}
    if not s.bootstrap and s.discover != "off":
        return [Finding("anchors", OK, "no bootstrap peers: peers are found on the LAN by --discover "
                                       f"{s.discover}")]
    if not s.bootstrap:
        return [Finding("anchors", FAIL if keyring else WARN,
                        "no bootstrap peers: this device cannot find the network (set --bootstrap MULTIADDR, "
                        "GTRACD_BOOTSTRAP or `bootstrap` in the config file)")]
    out: list[Finding] = []
    async with running_host(Identity.generate()) as host:
        async def one(addr: str) -> None:
            pid = _peer_of(addr)
            try:
                lp = await dial(host, addr, TIMEOUT_S)
            except GtracError as e:
                out.append(Finding("anchors", FAIL, str(e)))
                return
            except Exception as e:  # refused, unreachable, timed out, a handshake that failed
                out.append(Finding("anchors", FAIL, f"{addr} unreachable ({type(e).__name__}: {e or 'timed out'}): is "
                                                    "it running, and is the address right?"))
                return
            if pid not in keyring:
                out.append(Finding("anchors", WARN, f"{addr} answers but is not a keyring anchor: its ledger data is "
                                                    "refused (trust it: gtracd keys trust-anchor ITS_PUBLIC_KEY)"))
                return
            try:
                with trio.fail_after(TIMEOUT_S):
                    rtt, skew = await ping(host, lp, s.network)
            except Exception as e:  # SyncError (a refusal), TooSlowError, a broken stream
                out.append(Finding("anchors", FAIL, f"anchor {pid[-8:]} connects but does not answer on network "
                                                    f"{s.network!r} ({type(e).__name__}: {e}): same --network?"))
                return
            out.append(Finding("anchors", OK, f"anchor {pid[-8:]} answers in {rtt * 1000:.0f} ms"))
            if skew is None:
                return
            if abs(skew) > MAX_SKEW_S / 2:
                out.append(Finding("clock", FAIL, f"this clock is {skew:+.1f} s off anchor {pid[-8:]}: reports and "
                                                  f"heartbeats beyond {MAX_SKEW_S:g} s are refused (sync the clock: "
                                                  "NTP, or Settings > Date & time on a phone)"))
            else:
                out.append(Finding("clock", WARN if abs(skew) > WARN_SKEW_S else OK,
                                   f"clock within {abs(skew):.2f} s of anchor {pid[-8:]}"))

        async with trio.open_nursery() as n:
            for a in s.bootstrap:
                n.start_soon(one, a)
    missing = keyring - {_peer_of(a) for a in s.bootstrap}
    if missing and keyring:
        out.append(Finding("anchors", WARN, f"{len(missing)} keyring anchor(s) have no bootstrap address here: "
                                            "reached only once another peer names them"))
    return out
