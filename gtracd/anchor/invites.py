"""The anchor's side of `gtracd join`: count redemptions of the invites it signed (keyring/invite.py), so an
invite made with `--uses N` lets in N devices and no more. One short stream per redemption: the invite string
in (one frame, capped), `{ok}` or `{ok: false, reason, message}` out; the count is on disk before the answer.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import msgpack
import trio

from ..errors import UserError
from ..keyring.invite import MAX_TEXT, InviteRefused, Redemptions, read_invite
from ..net.framing import FramedStream

log = logging.getLogger("gtracd.anchor")
READ_S = 10.0


class InviteDesk:
    def __init__(self, path: Path, me: bytes, network: str):
        self.path, self.me, self.network = path, me, network
        try:
            state = json.loads(path.read_text())
        except FileNotFoundError:
            state = {}
        except (OSError, ValueError) as e:  # never silently reset the counts: refuse to start
            raise UserError(f"cannot read the invite redemptions {path}: {e}") from None
        self.redemptions = Redemptions(state)
        self.counts = {"redeemed": 0, "refused": 0}
        self._lock = trio.Lock()

    def redeem(self, text: str, now: float) -> None:
        inv = read_invite(text, now, self.network)
        if inv.issuer != self.me:
            raise InviteRefused("foreign", "signed by another anchor: redeem it there")
        self.redemptions.redeem(inv, now)
        tmp = self.path.with_suffix(".tmp")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w") as f:
            json.dump(self.redemptions.state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        fd = os.open(self.path.parent, os.O_RDONLY)  # the rename itself survives a crash
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    async def handle(self, stream) -> None:
        fs = FramedStream(stream)
        try:
            raw = await fs.read_raw(READ_S, cap=MAX_TEXT)
            async with self._lock:  # one redemption at a time: the count and the file agree
                try:
                    self.redeem(raw.decode("utf-8", "replace"), time.time())
                    reply = {"ok": True}
                    self.counts["redeemed"] += 1
                except InviteRefused as e:
                    reply = {"ok": False, "reason": e.reason, "message": str(e)}
                    self.counts["refused"] += 1
            await fs.write_raw(msgpack.packb(reply), READ_S)
        except Exception as e:  # a slow, oversized or broken request: dropped, counted
            self.counts["refused"] += 1
            log.info("invite redemption from %s dropped: %s", fs.remote_peer, type(e).__name__)
        finally:
            await fs.close()

    def status(self) -> dict:
        return {"invites": {**self.counts, "tracked": len(self.redemptions.state)}}
