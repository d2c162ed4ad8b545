"""The network as the local daemons see it, from their status documents (pure: no I/O, no rich).

`gtracd status` and `gtracd top` read every status file under a data directory (see gtracd.daemon.statusfiles.collect) and
build one `Network` from them: the workers every seeker, anchor or self-placing worker heard in heartbeats
(the freshest word on each wins), the local daemons themselves, the anchors and whether they are in sync,
layer coverage per model (alive, serving replicas at or above the trust floor, as routing would count them),
the chains recent requests used, and every drop counter by reason. Status documents are written by our own
daemons, but most strings in them came from the network (names, states, models): nothing here interprets
them, and malformed entries are skipped, never fatal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..routing.coverage import Coverage, replicas
from ..wire.kinds import MAX_LAYERS
from ..wire.text import shown

SEP = "·"  # between a name and the short peer id that disambiguates it
DEFAULT_TRUST_FLOOR = 0.96  # config.Settings.trust_floor, when no document says which floor it routes with


@dataclass
class Peer:
    peer_id: str
    name: str
    role: str
    layers: tuple[int, int] | None
    total_layers: int | None
    model: str
    state: str  # serving | draining | joining | loading | gone | up | down | stale
    trust: float | None
    latency_ms: float | None
    heard_s_ago: float | None
    local: bool = False  # a daemon with a status file under this data directory
    label: str = ""  # the name as shown: with the short peer id where two peers share a name

    @property
    def alive(self) -> bool:
        return self.state not in ("gone", "down", "stale")


@dataclass(frozen=True)
class ModelCoverage(Coverage):
    """A model's coverage as `gtracd top` shows it: routing's Coverage (replicas per layer, holes, the
    weakest span), plus which model, the floor it was counted at, and how many workers announce it."""

    model: str = ""
    trust_floor: float = 0.0
    workers: int = 0  # workers announcing this model (at any depth)


@dataclass
class Anchor:
    peer_id: str
    up: bool
    in_sync: bool | None = None  # the last successful anti-entropy round moved nothing (None: none seen)
    synced_s_ago: float | None = None  # since that round
    failed_s_ago: float | None = None  # since the last failed round
    failures: int = 0  # failed rounds in all (status --json)
    local: bool = False

    @property
    def last_failed(self) -> bool:
        return self.failed_s_ago is not None and (self.synced_s_ago is None or self.failed_s_ago < self.synced_s_ago)


@dataclass
class Network:
    daemons: list[dict]  # the local status documents themselves
    peers: dict[str, Peer]
    coverage: list[ModelCoverage]
    anchors: dict[str, Anchor]
    requests: list[dict]  # newest first, from every local seeker
    chains: list[list[dict]]  # distinct chains of recent requests, newest first
    drops: dict[str, int]  # reason -> count, summed over local daemons
    ledgers: list[dict] = field(default_factory=list)  # per local replica: who, reports, reporters, pending


def short(pid: str, n: int = 8) -> str:
    return pid[-n:] if pid else "?"


def number(x) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else None


def as_dict(x) -> dict:
    return x if isinstance(x, dict) else {}


def as_list(x) -> list:
    return x if isinstance(x, list) else []


def _int(x) -> int | None:
    return x if isinstance(x, int) and not isinstance(x, bool) else None


def _depth(x) -> int | None:
    """A model depth as the wire allows it (a status file holds what daemons heard: an absurd depth must not
    make the coverage map allocate it)."""
    n = _int(x)
    return n if n is not None and 1 <= n <= MAX_LAYERS else None


def _range(v, total) -> tuple[int, int] | None:
    if not isinstance(v, (list, tuple)) or len(v) != 2 or _int(v[0]) is None or _int(v[1]) is None:
        return None
    a, b = v
    if not 0 <= a < b or (isinstance(total, int) and b > total):
        return None
    return a, b


def _worker_peer(pid: str, w: dict, now_offset: float) -> Peer | None:
    if not isinstance(w, dict):
        return None
    total = _depth(w.get("total_layers"))
    state = str(w.get("state") or "serving")
    heard = number(w.get("heard_s_ago"))
    return Peer(peer_id=shown(pid), name=shown(w.get("name") or ""), role="worker",
                layers=_range(w.get("layers"), total), total_layers=total, model=shown(w.get("model") or ""),
                state=shown(state) if w.get("alive", True) else "gone", trust=number(w.get("trust")),
                latency_ms=number(w.get("latency_ms")),
                heard_s_ago=None if heard is None else round(heard + now_offset, 1))


def _fresher(a: Peer, b: Peer) -> bool:
    """Is a fresher word on a peer than b? Heard more recently (never heard counts as oldest)."""
    ha = math.inf if a.heard_s_ago is None else a.heard_s_ago
    hb = math.inf if b.heard_s_ago is None else b.heard_s_ago
    return ha < hb


def build(docs: list[dict], trust_floor: float | None = None) -> Network:
    """One view of the network from the local daemons' status documents (as gtracd.daemon.statusfiles.collect
    returns them, each with `stale` and `age_s`)."""
    peers: dict[str, Peer] = {}
    anchors: dict[str, Anchor] = {}
    drops: dict[str, int] = {}
    requests: list[dict] = []
    ledgers: list[dict] = []
    floors = []
    for d in docs:
        if isinstance(d.get("trust_floor"), (int, float)):
            floors.append(float(d["trust_floor"]))
        _merge_workers(peers, d)
        _merge_anchors(anchors, d)
        _add_drops(drops, d)
        requests += [{**r, "seeker": str(d.get("name", ""))} for r in as_list(d.get("requests")) if isinstance(r, dict)]
        led = d.get("ledger")
        if isinstance(led, dict):
            ledgers.append({"who": f"{d.get('role')} {d.get('name')}", "reports": led.get("reports", 0),
                            "reporters": led.get("reporters", 0), "pending": led.get("pending", 0)})
    for d in docs:  # the local daemons themselves: their own word beats what others heard
        _local_daemon(peers, anchors, d)
    for pid, a in anchors.items():  # anchors only named by the keyring: a row, up or down
        if pid not in peers:
            peers[pid] = Peer(pid, "", "anchor", None, None, "", "up" if a.up else "down", None, None, None)
    _label(peers)
    requests.sort(key=lambda r: -(number(r.get("at")) or 0.0))
    floor = trust_floor if trust_floor is not None else (min(floors) if floors else DEFAULT_TRUST_FLOOR)
    pinned = {shown(d["model"]) for d in docs if isinstance(d.get("model"), str)}  # seekers pin, workers serve
    return Network(daemons=docs, peers=peers, coverage=coverage(peers.values(), floor, pinned), anchors=anchors,
                   requests=requests, chains=chains_of(requests), drops=drops, ledgers=ledgers)


def _merge_workers(peers: dict[str, Peer], d: dict) -> None:
    """The workers a daemon heard: the freshest word on each, and a latency someone measured beats none."""
    age = number(d.get("age_s")) or 0.0  # a document written a while ago: its "heard" ages are older now
    for pid, w in as_dict(d.get("workers")).items():
        p = _worker_peer(pid, w, age)
        if p is None:
            continue
        old = peers.get(pid)
        if old is None or _fresher(p, old):
            peers[pid] = p
        new, other = peers[pid], (p if peers[pid] is old else old)
        if other is not None and new.latency_ms is None:
            new.latency_ms = other.latency_ms


def _merge_anchors(anchors: dict[str, Anchor], d: dict) -> None:
    """The anchors a daemon syncs with: up if any local daemon reaches it, the latest round's result."""
    anc = d.get("anchors")
    if not isinstance(anc, dict):
        return
    age = number(d.get("age_s")) or 0.0
    for pid, a in anc.items():
        if not isinstance(a, dict):
            continue
        ok_at = number(a.get("ok_at"))
        cur = anchors.setdefault(str(pid), Anchor(str(pid), False))
        cur.up = cur.up or bool(a.get("reachable"))  # reachable from any local daemon
        cur.failures = max(cur.failures, _int(a.get("failures")) or 0)
        ago = None if ok_at is None else max(0.0, round(_now(d) - ok_at + age, 1))
        if ago is not None and (cur.synced_s_ago is None or ago < cur.synced_s_ago):  # the latest round
            cur.synced_s_ago = ago
            cur.in_sync = a.get("in_sync") if isinstance(a.get("in_sync"), bool) else None
        failed_at = number(a.get("failed_at"))
        fago = None if failed_at is None else max(0.0, round(_now(d) - failed_at + age, 1))
        if fago is not None and (cur.failed_s_ago is None or fago < cur.failed_s_ago):
            cur.failed_s_ago = fago


def _add_drops(drops: dict[str, int], d: dict) -> None:
    for group, prefix in (("dropped", ""), ("admission_dropped", "admission."), ("library_logs", "libp2p.")):
        for k, v in as_dict(d.get(group)).items():
            if isinstance(v, int):
                drops[prefix + shown(k)] = drops.get(prefix + shown(k), 0) + v
    rejected = as_dict(d.get("gossip")).get("rejected")
    if isinstance(rejected, int) and not isinstance(rejected, bool) and rejected:
        drops["gossip.rejected"] = drops.get("gossip.rejected", 0) + rejected


def _local_daemon(peers: dict[str, Peer], anchors: dict[str, Anchor], d: dict) -> None:
    pid = shown(d.get("peer_id", ""))
    role = shown(d.get("role", "?"))
    stale = bool(d.get("stale"))
    if role == "anchor":
        a = anchors.setdefault(pid, Anchor(pid, not stale))
        a.up, a.local = not stale, True
    heard = peers.get(pid)
    total = _depth(d.get("total_layers")) or (heard.total_layers if heard else None)
    state = "stale" if stale else shown(d.get("state") or (heard.state if heard else "up"))
    peers[pid] = Peer(peer_id=pid, name=shown(d.get("name", "")), role=role,
                      layers=_range(d.get("layers"), total) if role == "worker" else None,
                      total_layers=total, model=shown(d.get("model") or (heard.model if heard else "")),
                      state=state, trust=heard.trust if heard else None,
                      latency_ms=heard.latency_ms if heard else None,
                      heard_s_ago=number(d.get("age_s")), local=True)


def _now(d: dict) -> float:
    return number(d.get("written_at")) or 0.0


def _label(peers: dict[str, Peer]) -> None:
    """Names as shown: a name two peers share, or one that could pass for another's label (it contains the
    separator), gets the short peer id; no name shows the id."""
    count: dict[str, int] = {}
    for p in peers.values():
        count[p.name] = count.get(p.name, 0) + 1
    for p in peers.values():
        if not p.name:
            p.label = short(p.peer_id)
        elif count[p.name] == 1 and SEP not in p.name:
            p.label = p.name
        else:
            p.label = f"{p.name}{SEP}{short(p.peer_id)}"


def coverage(peers, trust_floor: float, pinned: set[str] = frozenset()) -> list[ModelCoverage]:
    """Per model: replicas per layer among alive, serving workers at or above the trust floor. A model's depth
    is the one most of its workers announce (routing leaves the others out, peerview.PeerView._depth): one
    worker claiming 100,000 layers cannot paint the map red. Models a local daemon pins or serves come
    first, then by how many workers serve them."""
    depths: dict[str, dict[int, int]] = {}
    for p in peers:
        if p.role == "worker" and p.total_layers and p.model:
            d = depths.setdefault(p.model, {})
            d[p.total_layers] = d.get(p.total_layers, 0) + 1
    out = []
    for m, d in depths.items():
        total = max(d.items(), key=lambda kv: (kv[1], -kv[0]))[0]
        ranges = [p.layers for p in peers
                  if p.role == "worker" and p.model == m and p.total_layers == total and p.layers
                  and p.layers[1] <= total and p.state == "serving" and (p.trust is None or p.trust >= trust_floor)]
        out.append(ModelCoverage(total, tuple(replicas(total, ranges)), (math.inf,) * total, model=m,
                                 trust_floor=trust_floor, workers=sum(d.values())))
    out.sort(key=lambda c: (c.model not in pinned, -c.workers, c.model))
    return out


def chains_of(requests: list[dict], keep: int = 5) -> list[list[dict]]:
    """Distinct chains (by their peers in order) of the given requests, in the order given."""
    seen, out = set(), []
    for r in requests:
        chain = [h for h in as_list(r.get("chain")) if isinstance(h, dict)]
        key = tuple(str(h.get("peer")) for h in chain)
        if chain and key not in seen:
            seen.add(key)
            out.append(chain)
            if len(out) == keep:
                break
    return out
