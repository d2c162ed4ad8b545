"""The model card as a seeker gets it: fetched from a worker in parts, checked against the fingerprint the
seeker pinned (catalog.card_fingerprint: a worker cannot hand over another tokenizer or chat template for the
same model), and read into the tokenizer every text of that model goes through (tokens/). One verified
tokenizer per fingerprint per process."""

from __future__ import annotations

import trio

from ..catalog.fingerprint import CARD_FILE_MAX, CARD_FILES, CARD_MAX, card_fingerprint
from ..net.hop import PROTOCOL, HopFailed, HopSession
from ..tokens.tokenizer import Tokenizer


async def fetch_card(session: HopSession, fingerprint: str, timeout: float) -> dict[str, bytes]:
    """The card files of `fingerprint` from the worker behind `session` (HopFailed PROTOCOL if what it sends
    is not that card; HopError/HopFailed as any request otherwise)."""
    peer = session.peer
    idx = await session.request("card", {}, timeout)
    sizes = idx["files"]
    if set(sizes) - set(CARD_FILES):
        raise HopFailed(peer, f"sent a model card with unknown files {sorted(set(sizes) - set(CARD_FILES))}", PROTOCOL)
    if any(n > CARD_FILE_MAX for n in sizes.values()) or sum(sizes.values()) > CARD_MAX:
        raise HopFailed(peer, "sent a model card larger than the caps", PROTOCOL)
    files: dict[str, bytes] = {}
    for name in CARD_FILES:
        if name not in sizes:
            continue
        buf = bytearray()
        while len(buf) < sizes[name]:
            part = await session.request("card_part", {"name": name, "offset": len(buf)}, timeout)
            if part["name"] != name or part["offset"] != len(buf) or not part["data"] or \
                    len(buf) + len(part["data"]) > sizes[name]:
                raise HopFailed(peer, f"sent a card part that does not continue {name}", PROTOCOL)
            buf.extend(part["data"])
        files[name] = bytes(buf)
    if card_fingerprint(idx["weights"], files) != fingerprint:
        raise HopFailed(peer, f"sent a model card that is not model {fingerprint}'s (forged tokenizer or "
                              f"template)", PROTOCOL)
    return files


class Cards:
    """Verified tokenizers by model fingerprint (the seeker's event loop owns this)."""

    def __init__(self):
        self._tokenizers: dict[str, Tokenizer] = {}
        self._lock = trio.Lock()  # one fetch at a time: concurrent requests for a new model wait for it

    def get(self, fingerprint: str) -> Tokenizer | None:
        return self._tokenizers.get(fingerprint)

    async def tokenizer(self, fingerprint: str, session: HopSession, timeout: float) -> Tokenizer:
        async with self._lock:
            tok = self._tokenizers.get(fingerprint)
            if tok is None:
                files = await fetch_card(session, fingerprint, timeout)
                tok = await trio.to_thread.run_sync(Tokenizer.from_files, files)
                self._tokenizers[fingerprint] = tok
            return tok
