"""Deployment plans (pure): the G-TRAC reference's CSV columns, strict validation, a seeded generator.

Columns, in order (the reference's, so its plans load unchanged):
    peer_id,template,host_id,host_type,ip,port,layer_start,layer_end,cpu_load,fail_rate,trust0,net_delay_ms
`layer_end` is INCLUSIVE, as in the reference (a peer with layer_start 0, layer_end 8 hosts layers 0..8,
i.e. the half-open range 0:9 everywhere else in gtracd). Optional extra columns carry the profiles the paper
lacks: byzantine_rate, crash_after_requests, crash_at_s, flap_period_s, flap_down_s, delay_growth_per_min.
`ip:port` names the reference's worker process that serves the peer (several peers per process, possibly of
different layer ranges); gtracd's lab binds loopback ports of its own and uses ip:port only to keep such peers
together, so a plan written for real machines (the reference's use a VPN's 100.x addresses) runs unchanged.
`template` is a profile's name or alias, bare (`guaranteed_safe`) or prefixed with the row's host type as the
reference's published plans write it (`P_guaranteed_safe`, `S_normal`); a prefix must agree with `host_type`.
Several plan files merge into one network (`merge_plans`); a peer id may appear in only one of them.
"""

from __future__ import annotations

import csv
import io
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import UserError
from .profiles import EXTRA_FIELDS, RATE_FIELDS, Catalog

COLUMNS = ("peer_id", "template", "host_id", "host_type", "ip", "port", "layer_start", "layer_end", "cpu_load",
           "fail_rate", "trust0", "net_delay_ms")
INT_EXTRAS = ("crash_after_requests",)


class PlanError(UserError):
    """A plan refused before anything starts: one line naming the row and column."""


@dataclass
class PlanRow:
    peer_id: str
    template: str
    host_id: str
    host_type: str
    ip: str
    port: int
    layer_start: int
    layer_end: int  # inclusive (reference convention)
    cpu_load: float
    fail_rate: float
    trust0: float
    net_delay_ms: float
    extra: dict = field(default_factory=dict)  # EXTRA_FIELDS present in the plan
    where: tuple[str, int] = field(default=("", 0), compare=False)  # (file name, row) it was read from

    @property
    def start(self) -> int:
        return self.layer_start

    @property
    def end(self) -> int:  # exclusive
        return self.layer_end + 1

    @property
    def process_key(self) -> tuple[str, int]:
        return (self.ip, self.port)


@dataclass
class Plan:
    rows: list[PlanRow]
    layers: int
    extra_columns: tuple[str, ...] = ()

    def by_id(self) -> dict[str, PlanRow]:
        return {r.peer_id: r for r in self.rows}

    def ranges(self) -> list[tuple[int, int]]:
        return sorted({(r.start, r.end) for r in self.rows})

    def templates(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.rows:
            out[r.template] = out.get(r.template, 0) + 1
        return out

    def addresses(self) -> list[str]:
        """The plan's own (non-loopback) ip addresses, which the lab emulates on loopback."""
        return sorted({r.ip for r in self.rows if not r.ip.startswith("127.") and r.ip not in ("localhost", "::1")})

    def processes(self) -> int:
        return len({r.process_key for r in self.rows})


def _num(text: str, where: str, typ=float, lo: float | None = None, hi: float | None = None):
    try:
        v = typ(text)
    except (TypeError, ValueError):
        raise PlanError(f"{where}: {text!r} is not {'an integer' if typ is int else 'a number'}") from None
    if typ is float and (v != v or v in (float("inf"), float("-inf"))):
        raise PlanError(f"{where}: {text!r} is not a finite number")
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        rng = f"[{lo:g}, {hi:g}]" if hi is not None else f">= {lo:g}"
        raise PlanError(f"{where}: {text} is outside {rng}")
    return v


def parse_plan(text: str, catalog: Catalog, name: str = "plan", layers: int | None = None) -> Plan:
    """Parse and validate; raises PlanError naming the first bad row and column."""
    reader = csv.reader(io.StringIO(text))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise PlanError(f"{name}: empty file (expected the header {','.join(COLUMNS)})") from None
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise PlanError(f"{name} row 1 (header): missing column(s) {', '.join(missing)}")
    unknown = [c for c in header if c not in COLUMNS and c not in EXTRA_FIELDS]
    if unknown:
        raise PlanError(f"{name} row 1 (header), column {unknown[0]}: unknown column "
                        f"(extras: {', '.join(EXTRA_FIELDS)})")
    if len(set(header)) != len(header):
        raise PlanError(f"{name} row 1 (header): a column appears twice")
    extras = tuple(c for c in header if c in EXTRA_FIELDS)
    rows: list[PlanRow] = []
    seen: dict[str, int] = {}
    port_host: dict[tuple[str, int], tuple[str, int]] = {}
    for lineno, cells in enumerate(reader, start=2):
        if not cells or all(not c.strip() for c in cells):
            continue
        if len(cells) != len(header):
            raise PlanError(f"{name} row {lineno}: {len(cells)} cells, the header has {len(header)} (malformed row)")
        d = {h: c.strip() for h, c in zip(header, cells, strict=True)}

        def at(col: str, lineno=lineno) -> str:
            return f"{name} row {lineno}, column {col}"

        pid = d["peer_id"]
        if not pid:
            raise PlanError(f"{at('peer_id')}: empty")
        if pid in seen:
            raise PlanError(f"{at('peer_id')}: duplicate peer id {pid!r} (first on row {seen[pid]})")
        seen[pid] = lineno
        if d["host_type"] not in catalog.hosts:
            raise PlanError(f"{at('host_type')}: unknown host type {d['host_type']!r} "
                            f"(known: {', '.join(catalog.hosts)})")
        template_of(catalog, d["template"], d["host_type"], at("template"))
        if not d["host_id"]:
            raise PlanError(f"{at('host_id')}: empty")
        port = _num(d["port"], at("port"), int, 1, 65535)
        key = (d["ip"], port)
        if key in port_host and port_host[key][0] != d["host_id"]:
            raise PlanError(f"{at('port')}: duplicate port {d['ip']}:{port}, already used by host "
                            f"{port_host[key][0]} on row {port_host[key][1]} (one process lives on one host)")
        port_host.setdefault(key, (d["host_id"], lineno))
        ls = _num(d["layer_start"], at("layer_start"), int, 0)
        le = _num(d["layer_end"], at("layer_end"), int, 0)
        if le < ls:
            raise PlanError(f"{at('layer_end')}: {le} is below layer_start {ls} (layer_end is inclusive)")
        if layers is not None and le >= layers:
            raise PlanError(f"{at('layer_end')}: {le} is beyond the model's {layers} layers (inclusive end)")
        extra = {}
        for c in extras:
            if d[c] == "":
                continue
            typ = int if c in INT_EXTRAS else float
            extra[c] = _num(d[c], at(c), typ, 0, 1 if c in RATE_FIELDS else None)
        rows.append(PlanRow(pid, d["template"], d["host_id"], d["host_type"], d["ip"], port, ls, le,
                            _num(d["cpu_load"], at("cpu_load"), float, 0, 1000),
                            _num(d["fail_rate"], at("fail_rate"), float, 0, 1),
                            _num(d["trust0"], at("trust0"), float, 0, 1),
                            _num(d["net_delay_ms"], at("net_delay_ms"), float, 0, 600_000), extra, (name, lineno)))
    if not rows:
        raise PlanError(f"{name}: no peers")
    return Plan(rows, _check_coverage(rows, layers, name), extras)


def template_of(catalog: Catalog, template: str, host_type: str, where: str):
    """The profile a plan's template denotes: a profile's name or alias, bare or prefixed with the host type
    (`P_guaranteed_safe`, the reference's published plans); the prefix must agree with `host_type`."""
    prof = catalog.profile(template)
    if prof is not None:
        return prof
    prefix, sep, bare = template.partition("_")
    if sep and prefix in catalog.hosts and catalog.profile(bare) is not None:
        if prefix != host_type:
            raise PlanError(f"{where}: template {template!r} names host type {prefix}, but the row's host_type is "
                            f"{host_type!r} (the prefix must agree)")
        return catalog.profile(bare)
    known = sorted({a for p in catalog.profiles.values() for a in (p.template, *p.aliases)})
    raise PlanError(f"{where}: unknown template {template!r} (known: {', '.join(known)}, bare or prefixed with the "
                    f"host type as in P_guaranteed_safe)")


def _check_coverage(rows: list[PlanRow], layers: int | None, name: str) -> int:
    """The model depth (given, or the largest layer_end + 1) once every layer is hosted; else PlanError."""
    depth = layers if layers is not None else max(r.end for r in rows)
    covered = [False] * depth
    for r in rows:
        for i in range(r.start, min(r.end, depth)):
            covered[i] = True
    holes = [i for i, c in enumerate(covered) if not c]
    if holes:
        a = holes[0]
        b = a
        while b + 1 < depth and not covered[b + 1]:
            b += 1
        raise PlanError(f"{name}, columns layer_start/layer_end: layers {a}..{b} are hosted by no peer "
                        f"(uncovered range; the model has {depth} layers)")
    return depth


def merge_plans(plans: list[Plan], names: list[str]) -> Plan:
    """Several plan files as one network (the reference publishes one per shard size): every file must describe
    the same model depth, a peer id may appear once across them, and one ip:port stays on one host."""
    if len(plans) == 1:
        return plans[0]
    depths = {p.layers for p in plans}
    if len(depths) != 1:
        raise PlanError("the plans describe different model depths: " +
                        ", ".join(f"{n} {p.layers} layers" for n, p in zip(names, plans, strict=True)))
    seen: dict[str, PlanRow] = {}
    port_host: dict[tuple[str, int], PlanRow] = {}
    for plan in plans:
        for r in plan.rows:
            where = f"{r.where[0]} row {r.where[1]}"
            if r.peer_id in seen:
                a = seen[r.peer_id]
                raise PlanError(f"{where}, column peer_id: peer id {r.peer_id!r} collides with {a.where[0]} row "
                                f"{a.where[1]} (peer ids must be unique across the plans)")
            seen[r.peer_id] = r
            other = port_host.setdefault(r.process_key, r)
            if other.host_id != r.host_id:
                raise PlanError(f"{where}, column port: {r.ip}:{r.port} is host {r.host_id} here but host "
                                f"{other.host_id} in {other.where[0]} row {other.where[1]} (one process lives on "
                                f"one host)")
    extras = tuple(c for c in EXTRA_FIELDS if any(c in p.extra_columns for p in plans))
    return Plan([r for p in plans for r in p.rows], depths.pop(), extras)


def load_plan(path: Path | str, catalog: Catalog, layers: int | None = None) -> Plan:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise PlanError(f"cannot read plan {p}: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise PlanError(f"{p.name}: not UTF-8 text (byte {e.start}): is this a CSV plan?") from None
    return parse_plan(text, catalog, p.name, layers)


def plan_paths(values: list[str] | str) -> list[Path]:
    """`--plan a.csv --plan b.csv` or `--plan a.csv,b.csv` (or both) -> the files, in order, each once."""
    out: list[Path] = []
    for v in [values] if isinstance(values, str) else values:
        for part in (x.strip() for x in v.split(",")):
            if part and Path(part) not in out:
                out.append(Path(part))
    if not out:
        raise PlanError("--plan names no file")
    return out


def load_plans(paths: list[Path], catalog: Catalog, layers: int | None = None) -> Plan:
    """One or several plan files as one network (see merge_plans)."""
    return merge_plans([load_plan(p, catalog, layers) for p in paths], [Path(p).name for p in paths])


def format_plan(plan: Plan) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS + plan.extra_columns)
    for r in plan.rows:
        d = asdict(r)
        w.writerow([_fmt(d[c]) for c in COLUMNS] + [_fmt(r.extra.get(c, "")) for c in plan.extra_columns])
    return buf.getvalue()


def _fmt(v) -> str:
    if isinstance(v, float):  # the shortest text that reads back as the same number
        return repr(v) if v != int(v) else str(int(v))
    return str(v)


def parse_mix(text: str, catalog: Catalog) -> dict[str, float]:
    """`golden=0.1,honey_pot=0.35,...` -> profile name -> weight (normalised to 1)."""
    out: dict[str, float] = {}
    for part in (x.strip() for x in text.split(",")):
        if not part:
            continue
        name, _, w = part.partition("=")
        prof = catalog.profile(name.strip())
        if prof is None:
            raise UserError(f"--mix: unknown profile {name.strip()!r} (profiles: {', '.join(catalog.profiles)})")
        try:
            weight = float(w)
        except ValueError:
            raise UserError(f"--mix: {part!r} wants NAME=WEIGHT") from None
        if not (weight >= 0 and weight != float("inf")):
            raise UserError(f"--mix: {part!r} wants a finite weight >= 0")
        out[prof.name] = out.get(prof.name, 0.0) + weight
    total = sum(out.values())
    if total <= 0:
        raise UserError("--mix: weights sum to zero")
    return {k: v / total for k, v in out.items()}


def _counts(n: int, mix: dict[str, float]) -> dict[str, int]:
    """Largest-remainder apportionment of n peers (deterministic: ties broken by name)."""
    raw = {k: n * w for k, w in mix.items()}
    out = {k: int(v) for k, v in raw.items()}
    left = n - sum(out.values())
    for k in sorted(raw, key=lambda k: (-(raw[k] - int(raw[k])), k))[:left]:
        out[k] += 1
    return out


def generate_plan(catalog: Catalog, peers: int, layers: int, shard_sizes: list[int], mix: dict[str, float],
                  seed: int, peers_per_process: int = 8) -> Plan:
    """A plan drawn from the profiles: peers spread evenly over the shard sizes, then over each size's
    segments; a golden replica on every segment when the mix has golden peers; parameters drawn uniformly
    from each profile's ranges. Same arguments, same plan."""
    if peers < 1 or layers < 1:
        raise UserError("need --peers >= 1 and --layers >= 1")
    if not shard_sizes or len(set(shard_sizes)) != len(shard_sizes):
        raise UserError(f"--shard-sizes wants distinct sizes, got {shard_sizes}")
    for s in shard_sizes:
        if s < 1 or layers % s:
            raise UserError(f"--shard-sizes: {s} does not divide {layers} layers")
    rng = random.Random(seed)
    segments: list[tuple[int, int]] = []  # every (start, end) slot, by shard size
    per_size = _counts(peers, {str(s): 1.0 / len(shard_sizes) for s in shard_sizes})
    slots: list[tuple[int, int]] = []
    for s in shard_sizes:
        segs = [(a, a + s) for a in range(0, layers, s)]
        segments += segs
        n = per_size[str(s)]
        if n < len(segs):
            raise UserError(f"{n} peers cannot cover {len(segs)} segments of {s} layers: raise --peers")
        slots += [segs[i % len(segs)] for i in range(n)]
    counts = _counts(peers, mix)
    profiles: list[str | None] = [None] * len(slots)
    if counts.get("golden", 0):
        first = {}
        for i, seg in enumerate(slots):  # one golden replica per segment first (the paper's plans have one)
            first.setdefault(seg, i)
        if counts["golden"] < len(first):
            raise UserError(f"the mix gives {counts['golden']} golden peers for {len(first)} segments: "
                            f"raise golden's weight or --peers")
        for i in first.values():
            profiles[i] = "golden"
        counts["golden"] -= len(first)
    rest = [name for name in sorted(counts) for _ in range(counts[name])]
    rng.shuffle(rest)
    it = iter(rest)
    profiles = [p if p is not None else next(it) for p in profiles]
    host_ids = {code: ht.hosts for code, ht in catalog.hosts.items()}
    rows: list[PlanRow] = []
    extra_cols: set[str] = set()
    proc_fill: dict[str, int] = {}
    host_port: dict[str, int] = {}
    next_port = 7000
    order = sorted(range(len(slots)), key=lambda i: (slots[i], i))
    for k, i in enumerate(order):
        prof = catalog.profiles[profiles[i]]
        host_type = rng.choice(sorted(prof.placeable_on()))
        host_id = rng.choice(sorted(host_ids[host_type]))
        rngs = prof.ranges_for(host_type)

        def draw(f, rngs=rngs):
            lo, hi = rngs[f]
            return lo if lo == hi else rng.uniform(lo, hi)

        fill = proc_fill.get(host_id, peers_per_process)
        if fill >= peers_per_process:  # a new reference-style worker process on this host
            host_port[host_id] = next_port
            next_port += 1
            fill = 0
        proc_fill[host_id] = fill + 1
        a, b = slots[i]
        extra = {}
        for f in EXTRA_FIELDS:
            if f in rngs:
                v = draw(f)
                extra[f] = int(round(v)) if f in INT_EXTRAS else round(v, 4)
                extra_cols.add(f)
        rows.append(PlanRow(f"peer{k:04d}", prof.template, host_id, host_type, "127.0.0.1", host_port[host_id], a,
                            b - 1, round(draw("cpu_load")), round(draw("fail_rate"), 4), round(draw("trust0"), 4),
                            round(draw("net_delay_ms")), extra))
    return Plan(rows, layers, tuple(f for f in EXTRA_FIELDS if f in extra_cols))
