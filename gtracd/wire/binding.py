"""Identity <-> transport binding (pure).

A worker identity is announced by heartbeat with addresses, but addresses are claims: anyone can advertise an
honest peer's address. When a seeker opens a session it names the identity it wants and sends a fresh nonce;
the worker answers with that identity's signature over (domain, the Noise-authenticated host peer id the
seeker is connected to, the nonce, the session id). Only a process holding the identity's key can produce
it, and only for the host it actually runs on, so work done at a host is credited to an identity that host
proves it serves — also when one process serves many (virtual) identities.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..identity import public_from_peer_id, verify

if TYPE_CHECKING:
    from gtracd.identity import Identity

DOMAIN = b"gtracd/bind/1\0"


def bind_message(host_peer_id: str, nonce: bytes, session: bytes) -> bytes:
    h = host_peer_id.encode()
    return DOMAIN + len(h).to_bytes(2, "big") + h + len(nonce).to_bytes(2, "big") + bytes(nonce) + bytes(session)


def sign_binding(ident: Identity, host_peer_id: str, nonce: bytes, session: bytes) -> bytes:
    return ident.sign(bind_message(host_peer_id, nonce, session))


def binding_ok(identity_peer_id: str, host_peer_id: str, nonce: bytes, session: bytes, proof: bytes | None) -> bool:
    """True iff `proof` is the identity's signature binding it to `host_peer_id` for this nonce and session."""
    if not proof:
        return False
    pub = public_from_peer_id(identity_peer_id)
    return pub is not None and verify(pub, bytes(proof), bind_message(host_peer_id, nonce, session))
