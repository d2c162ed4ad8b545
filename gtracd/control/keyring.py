"""The anchor keyring as a daemon keeps it current (driver of the pure gtracd.keyring): keyring updates heard
by gossip or written to this device's keystore by `gtracd keys` are verified against the keyring held, applied
in serial order, written back to the keystore, and handed to the role (`on_change`), which re-keys what
checks anchors (gossip senders, checkpoint quorums, epoch signers) and drops what a revoked key signed after
its revocation. Anchors gossip their last `HISTORY` updates again every `REPUBLISH_S`, so a device that was
away catches up; one task (the daemon's event loop) owns the keyring."""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import TYPE_CHECKING

import trio

from ..errors import DecodeError, UserError
from ..identity import Keystore
from ..keyring.update import Keyring, Refused, apply, decode, doc_of, from_doc, gossip_body, signers
from ..ledger.signed import revoked_after
from ..wire.envelope import Signer

if TYPE_CHECKING:
    from gtracd.daemon.node import Node

log = logging.getLogger("gtracd.keyring")
REPUBLISH_S = 30.0
KEEP_WAITING = 8  # updates that skipped ahead, held until the missing ones arrive
HISTORY = 32  # updates re-gossiped (the newest)


def chain_entry(raw: bytes, sigs: list[dict]) -> dict:
    return {"update": raw.hex(), "sigs": [{"key": bytes(s["key"]).hex(), "sig": bytes(s["sig"]).hex()} for s in sigs]}


def entry_parts(e: dict) -> tuple[bytes, list[dict]]:
    return bytes.fromhex(e["update"]), [{"key": bytes.fromhex(s["key"]), "sig": bytes.fromhex(s["sig"])}
                                        for s in e["sigs"]]


def follow_anchors(links, held: set[str], anchors) -> None:
    """Keep connections to the keyring's anchors and let former ones go; `held` (the role's anchor set, which
    others read) is updated in place."""
    new = set(anchors)
    for pid in held - new:
        links.untrust(pid)
    for pid in new - held:
        links.hold(pid, trusted=True)
    held.clear()
    held.update(new)


async def drop_former(replica, former: dict[str, float]) -> int:
    """A former anchor's epochs from its cut-off on: refused by the replica from now on (`former` is read live)
    and dropped from it and its log now. How many were dropped."""
    replica.refuse = lambda r: revoked_after(r, former)
    try:
        return len(await replica.purge(replica.refuse))
    except OSError as e:  # the log could not be rewritten: dropped in memory, and refused from now on
        log.error("cannot rewrite the ledger log after a keyring update: %s", e)
        return 0


class KeyringKeeper:
    def __init__(self, node: Node, keystore_path, quorum: int = 0, republish: bool = False):
        self.node, self.network, self.quorum, self.republish = node, node.settings.network, quorum, republish
        self.ks = Keystore(keystore_path)
        doc = self.ks.keyring_doc()
        self.keyring: Keyring = from_doc(doc, self.ks.anchors())
        self.chain: list[dict] = list(doc["chain"])
        self.waiting: dict[int, tuple[bytes, list[dict]]] = {}
        self.on_change: list = []  # async callables(keyring), in order
        self.refused: Counter[str] = Counter()
        self.applied = 0
        self._mtime = self._stamp()
        self.signer = Signer(node.ident)
        if 0 < quorum < len(self.keyring.anchors) // 2 + 1:
            log.warning("keyring_quorum %d is less than a majority of the %d anchors: fewer leaked keys than that "
                        "could change the keyring, and two updates for one serial could both reach it", quorum,
                        len(self.keyring.anchors))

    def _stamp(self) -> float | None:
        try:
            return self.ks.keyring_path.stat().st_mtime
        except OSError:
            return None

    async def offer(self, raw: bytes, sigs: list[dict]) -> bool:
        """Verify and apply one update (and any waiting one it unblocks); True if the keyring changed."""
        changed = False
        while True:
            try:
                u = decode(raw)
                new = apply(self.keyring, u, sigs, self.network, self.quorum)
            except DecodeError as e:
                self.refused["malformed"] += 1
                log.warning("keyring update refused: %s", e)
                return changed
            except Refused as e:
                self.refused[e.reason] += 1
                self._refused(u, sigs, e)
                return changed
            old = self.keyring
            self.keyring = new
            self.chain.append(chain_entry(raw, sigs))
            self.applied += 1
            changed = True
            self._save(old)
            log.warning("keyring update %d applied: %d anchors%s%s", u.serial, len(new.anchors),
                        f", removed {sorted(u.remove)}" if u.remove else "",
                        f", revoked {sorted(p for p, _ in u.revoke)}" if u.revoke else "")
            self.node.events("keyring", serial=u.serial, anchors=sorted(new.anchors), revoked=new.revoked)
            for cb in self.on_change:
                try:
                    await cb(new)
                except OSError as e:  # e.g. the ledger log could not be rewritten: applied in memory all the same
                    log.error("keyring update %d: %s", u.serial, e)
            if self.republish:  # an anchor passes it on at once (gossip from elsewhere already spreads too)
                await self.publish_now()
            for k in [k for k in self.waiting if k <= new.serial]:
                del self.waiting[k]
            nxt = self.waiting.pop(new.serial + 1, None)
            if nxt is None:
                return changed
            raw, sigs = nxt

    def _refused(self, u, sigs: list[dict], e: Refused) -> None:
        """Keep an update that skipped ahead (if a current anchor signed it: strangers cannot fill the slots);
        report a fork loudly; the rest is counted."""
        signed = bool(signers(self.keyring, u, sigs))
        if e.reason == "gap":
            if signed and (u.serial in self.waiting or len(self.waiting) < KEEP_WAITING):
                self.waiting[u.serial] = (u.raw, sigs)
        elif e.reason == "stale":
            held = self.chain[u.serial - 1]["update"] if 0 < u.serial <= len(self.chain) else None
            if held is not None and held != u.raw.hex() and signed:
                self.refused["conflict"] += 1
                log.error("keyring fork: another update %d than the one applied here carries a current anchor's "
                          "signature (anchors signed two updates for one serial)", u.serial)
        elif e.reason == "fork" and signed:
            log.error("%s", e)
        elif e.reason not in ("gap", "stale", "fork"):
            log.warning("keyring update refused: %s", e)

    def _save(self, old: Keyring) -> None:
        added = {p: k for p, k in self.keyring.anchors.items() if p not in old.anchors}
        try:
            self.ks.write_keyring(added, set(old.anchors) - set(self.keyring.anchors), doc_of(self.keyring, self.chain))
            self._mtime = self._stamp()
        except (OSError, UserError) as e:
            log.error("cannot write the keyring to %s: %s (applied in memory only)", self.ks.anchors_dir, e)

    async def on_gossip(self, env) -> None:
        if env.body["network"] != self.network:
            self.node.verifier.drop("wrong_network")
            return
        await self.offer(bytes(env.body["update"]), [dict(s) for s in env.body["sigs"]])

    async def watch_keystore(self, every: float) -> None:
        """Updates applied on this device (`gtracd keys apply-update`, another daemon sharing the keystore)."""
        while True:
            await trio.sleep(every)
            stamp = self._stamp()
            if stamp == self._mtime:
                continue
            self._mtime = stamp
            try:
                doc = self.ks.keyring_doc()
            except UserError as e:
                log.warning("%s", e)
                continue
            for e in doc["chain"]:
                try:
                    raw, sigs = entry_parts(e)
                    serial = decode(raw).serial
                except (DecodeError, KeyError, TypeError, ValueError, AttributeError):
                    self.refused["malformed"] += 1
                    continue
                if serial > self.keyring.serial:
                    await self.offer(raw, sigs)

    async def publish_forever(self) -> None:
        while True:
            await self.publish_now()
            await trio.sleep(REPUBLISH_S)

    async def publish_now(self) -> None:
        for e in self.chain[-HISTORY:]:
            raw, sigs = entry_parts(e)
            env = self.signer.sign("keyring_update", gossip_body(self.network, decode(raw), sigs))
            await self.node.gossip.publish("ledger", env.raw)

    async def run(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as n:
            n.start_soon(self.watch_keystore, max(0.5, min(self.node.settings.sync_s, 5.0)))
            if self.republish:
                n.start_soon(self.publish_forever)
            task_status.started()

    def status(self) -> dict:
        return {"keyring": {"serial": self.keyring.serial, "anchors": len(self.keyring.anchors),
                            "revoked": sorted(self.keyring.revoked), "retired": sorted(self.keyring.retired),
                            "applied": self.applied,
                            "refused": dict(self.refused), "waiting": sorted(self.waiting),
                            "at": time.time()}}
