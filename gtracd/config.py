"""One typed settings object. Precedence: defaults (the paper's Table III) < TOML file < GTRACD_* env < flags.

`Settings.sources` remembers where each effective value came from (`gtracd config show`).
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

from .errors import UserError


def _home() -> Path:
    return Path(os.environ.get("GTRACD_HOME") or Path.home() / ".gtracd")


@dataclass
class Settings:
    # --- network
    network: str = field(default="gtrac-local", metadata={"help": "network name; namespaces gossip topics"})
    listen: str = field(default="/ip4/127.0.0.1/tcp/0", metadata={"help": "libp2p listen multiaddr"})
    bootstrap: list[str] = field(default_factory=list, metadata={"help": "multiaddrs (with /p2p/ID) to dial"})
    announce: list[str] = field(default_factory=list, metadata={
        "help": "addresses offered to peers instead of the listening ones (a port forward, a public IP); default: "
                "every interface's address when listening on 0.0.0.0, loopback only if there is nothing else; 'none': "
                "only relay circuits (--relay-via)"})
    relay_serve: str = field(default="auto", metadata={
        "help": "serve circuit relay v2 for peers that cannot be dialled: auto (anchors only), on, off"})
    relay_allow: str = field(default="members", metadata={
        "help": "relay: who may reserve a slot: members (hosts heard in a signed heartbeat on this network, and "
                "keyring anchors) or any"})
    relay_reservations: int = field(default=64, metadata={"help": "relay: reservations held at once"})
    relay_circuits: int = field(default=16, metadata={"help": "relay: open circuits per reservation"})
    relay_circuit_mib: int = field(default=4096, metadata={"help": "relay: bytes per circuit (MiB), both ways"})
    relay_circuit_s: int = field(default=86400, metadata={"help": "relay: lifetime of one circuit (s)"})
    relay_via: list[str] = field(default_factory=list, metadata={
        "help": "reserve a slot on these relays (multiaddrs with /p2p/ID, or 'anchors': every keyring anchor) and "
                "announce the circuit addresses: for a worker peers cannot dial"})
    discover: str = field(default="off", metadata={
        "help": "find peers on the local network with no --bootstrap: mdns or off"})
    key: str = field(default="", metadata={"help": "keystore key name (default: the role name)"})
    keystore: str = field(default="", metadata={"help": "keystore directory (default ~/.gtracd/keys)"})
    data_dir: str = field(default="", metadata={"help": "state directory (default ~/.gtracd)"})
    # --- G-TRAC (paper Table III)
    mode: str = field(default="g-trac", metadata={"help": "routing mode: g-trac sp mr larac naive"})
    trust_floor: float = field(default=0.96, metadata={"help": "tau_min: peers below are pruned"})
    alpha: float = field(default=0.3, metadata={"help": "latency EWMA weight of a new observation"})
    latency0_ms: float = field(default=250.0, metadata={"help": "initial latency estimate"})
    reward: float = field(default=0.03, metadata={"help": "trust added to every chain peer on success"})
    penalty: float = field(default=0.20, metadata={"help": "trust removed from the culprit on failure"})
    unknown_penalty: float = field(default=0.05, metadata={"help": "trust removed from every hop, culprit unknown"})
    initial_trust: float = field(default=0.97, metadata={"help": "trust of a worker with no reports yet"})
    penalty_ms: float = field(default=1000.0, metadata={"help": "T_pen: failure detection + re-routing penalty"})
    larac_min_reliability: float = field(default=0.8, metadata={"help": "R_min of the LARAC baseline"})
    heartbeat_s: float = field(default=8.0, metadata={"help": "worker heartbeat period"})
    node_timeout_s: float = field(default=30.0, metadata={"help": "a peer is alive iff heard within this"})
    forget_after_s: float = field(default=300.0, metadata={
        "help": "a worker not heard for this long is forgotten (shown as gone until then)"})
    request_timeout_s: float = field(default=25.0, metadata={"help": "whole-request bound (per hop: derived)"})
    sync_s: float = field(default=2.0, metadata={"help": "registry / anti-entropy period"})
    reporter_budget: float = field(default=0.5, metadata={"help": "max trust one reporter moves per peer per window"})
    reporter_window_s: float = field(default=3600.0, metadata={"help": "slander-resistance window"})
    checkpoint_s: float = field(default=3600.0, metadata={
        "help": "anchors: fold ledger reports older than reporter_window_s into a signed checkpoint this often "
                "(0: never)"})
    wrong_output_penalty: float = field(default=0.5, metadata={"help": "trust removed by a spot check's wrong_output"})
    standing_age_s: float = field(default=86400.0, metadata={"help": "a reporter is established after this age..."})
    standing_reports: int = field(default=20, metadata={"help": "...and this many corroborated reports"})
    newcomer_budget: float = field(default=0.005, metadata={
        "help": "max trust all non-established reporters together move a worker established ones watch (below "
                "initial_trust - trust_floor, so fresh keys cannot push a new worker below the floor)"})
    latency_budget: float = field(default=1.0, metadata={
        "help": "max relative latency change one reporter makes per peer per window (1.0: by its whole value)"})
    newcomer_latency_budget: float = field(default=0.005, metadata={
        "help": "max relative latency change all non-established reporters together make per peer per epoch"})
    spot_check_rate: float = field(default=0.25, metadata={"help": "seeker: share of hops re-executed on a replica"})
    spot_check_calls: int = field(default=4, metadata={"help": "seeker: calls compared per checked hop"})
    spot_check_probation: int = field(default=1, metadata={
        "help": "seeker: turns in which a peer this seeker has not yet verified is checked on every call (0: only "
                "the random rate; spot checks off turn it off too)"})
    report_rate: float = field(default=5.0, metadata={"help": "anchor: sustained trust reports/s per reporter"})
    report_burst: float = field(default=50.0, metadata={"help": "anchor: report burst per reporter"})
    # --- worker
    model: str = field(default="smollm2-135m", metadata={
        "help": "worker: smollm2-135m | tiny-llama-L | HF folder | hub id; seeker: the one model it serves (or its fingerprint)"})
    quantize: str = field(default="none", metadata={
        "help": "worker: serve the weights as none (float32, as prepared) | int8 (weight-only, per output channel: "
                "a quarter of the memory per decoder layer; the embedding stays float32; see README for what it "
                "costs in quality); seeker: the scheme of the model it serves (workers of another scheme are "
                "another model)"})
    layers: str = field(default="", metadata={
        "help": "START:END layer range hosted by a worker, or auto: listen ~1.5 heartbeats to the network "
                "(--bootstrap), take the range that most improves coverage within --max-layers/--memory-mib "
                "(none given: the whole model), and move later to heal a hole"})
    max_layers: int = field(default=0, metadata={"help": "worker --layers auto: at most this many layers (0: no bound)"})
    memory_mib: int = field(default=0, metadata={
        "help": "worker --layers auto: resident weights at most this (0: no bound; KV cache: --cache-tokens)"})
    drain_s: float = field(default=30.0, metadata={
        "help": "worker: on SIGTERM/SIGINT (or a move) running sessions get this many seconds to finish, then "
                "are told `draining`; a second signal exits at once"})
    heal_after_s: float = field(default=0.0, metadata={
        "help": "worker --layers auto: a hole must last this long before a worker moves (0: 2 x heartbeat_s)"})
    move_window_s: float = field(default=600.0, metadata={"help": "worker --layers auto: at most one move per window"})
    torch_threads: int = field(default=1, metadata={"help": "torch threads per worker process"})
    max_batch: int = field(default=16, metadata={
        "help": "worker: decode steps of different sessions computed in one forward pass, at most (1: no batching)"})
    batch_wait_ms: float = field(default=20.0, metadata={
        "help": "worker: a decode step waits at most this for the steps of the other sessions decoding on its layers, "
                "to share their pass (0: never wait; a lone generation never waits)"})
    batch_gate_ms: float = field(default=200.0, metadata={
        "help": "worker hosting layer 0: the same wait, longer (a step starts there: concurrent generations gather "
                "into one batch that the later hops receive together)"})
    max_sessions: int = field(default=64, metadata={"help": "concurrent KV-cache sessions per worker"})
    cache_tokens: int = field(default=65536, metadata={"help": "KV-cache token budget per worker"})
    session_ttl_s: float = field(default=600.0, metadata={"help": "idle session lifetime"})
    max_length: int = field(default=4096, metadata={"help": "max positions per session"})
    peer_streams: int = field(default=16, metadata={"help": "worker: concurrent inference streams per remote peer"})
    max_streams: int = field(default=256, metadata={"help": "worker: concurrent inference streams in total"})
    # --- seeker
    max_new_tokens: int = field(default=64, metadata={"help": "tokens to generate"})
    hop_timeout_floor_s: float = field(default=2.0, metadata={"help": "minimum per-hop deadline"})
    hop_timeout_factor: float = field(default=10.0, metadata={"help": "per-hop deadline = factor x EWMA (+ floor)"})
    heal_wait_s: float = field(default=0.0, metadata={
        "help": "seeker: seconds a repair with no replacement waits for one to appear (0: fail at once); to "
                "outlast a healing move it must exceed node_timeout_s + the workers' heal_after_s + drain_s + "
                "load time"})
    route_wait_s: float = field(default=15.0, metadata={
        "help": "seeker: a request that arrives while no chain covers the model (still discovering, or a worker "
                "restarting) waits up to this for one before it fails (0: fail at once)"})
    wire_dtype: str = field(default="float32", metadata={
        "help": "seeker: the dtype hidden states travel in between hops: float32 (the text equals transformers') | "
                "float16 | bfloat16 (half the bytes per token per hop, for slow links; the text may differ)"})
    speculate: str = field(default="auto", metadata={
        "help": "seeker: speculative decoding with drafts from the conversation (prompt lookup, no model): auto "
                "(on, backs off while drafts keep failing) | off | K (up to K drafts a step, 1-32); the text is "
                "the same either way"})
    keyring_quorum: int = field(default=0, metadata={
        "help": "signatures of current keyring anchors a keyring update needs (0: a majority of them); every "
                "device of a network should use the same"})
    # --- operations
    metrics: str = field(default="", metadata={
        "help": "serve Prometheus /metrics and /health at [HOST:]PORT (HOST 127.0.0.1 unless given; '' off)"})
    log_format: str = field(default="human", metadata={"help": "human | json (one object per line)"})
    log_file: str = field(default="", metadata={"help": "write logs to this file, rotated by size ('' stderr)"})
    log_max_mib: float = field(default=10.0, metadata={"help": "--log-file: rotate when it reaches this size"})
    log_backups: int = field(default=5, metadata={"help": "--log-file: rotated files kept"})

    sources: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def home(self) -> Path:
        return Path(self.data_dir) if self.data_dir else _home()

    @property
    def keystore_path(self) -> Path:
        if self.keystore:
            return Path(self.keystore)
        if os.environ.get("GTRACD_KEYSTORE"):
            return Path(os.environ["GTRACD_KEYSTORE"])
        return self.home / "keys"

    def validate(self) -> Settings:
        if not 0.0 < self.trust_floor <= 1.0:
            raise UserError("trust_floor must be in (0, 1]")
        if not 0.0 < self.alpha <= 1.0:
            raise UserError("alpha must be in (0, 1]")
        if not 0.0 <= self.initial_trust <= 1.0:
            raise UserError("initial_trust must be in [0, 1]")
        for name in ("heartbeat_s", "node_timeout_s", "request_timeout_s", "sync_s", "latency0_ms", "forget_after_s"):
            if getattr(self, name) <= 0:
                raise UserError(f"{name} must be > 0")
        if self.mode not in ("g-trac", "sp", "mr", "larac", "naive"):
            raise UserError(f"unknown routing mode {self.mode!r} (g-trac, sp, mr, larac, naive)")
        for name in ("max_layers", "memory_mib", "drain_s", "heal_after_s", "move_window_s", "heal_wait_s",
                     "batch_wait_ms", "batch_gate_ms", "spot_check_probation", "route_wait_s", "log_backups", "keyring_quorum"):
            if getattr(self, name) < 0:
                raise UserError(f"{name} must be >= 0")
        if self.torch_threads < 1:
            raise UserError("torch_threads must be >= 1")
        if self.max_batch < 1:
            raise UserError("max_batch must be >= 1")
        if self.log_format not in ("human", "json"):
            raise UserError(f"log_format {self.log_format!r}: choose human or json")
        if self.log_max_mib <= 0:
            raise UserError("log_max_mib must be > 0")
        if self.metrics:
            metrics_bind(self.metrics)
        for name, allowed in (("relay_serve", ("auto", "on", "off")), ("relay_allow", ("members", "any")),
                              ("discover", ("off", "mdns"))):
            if getattr(self, name) not in allowed:
                raise UserError(f"{name} {getattr(self, name)!r}: choose {', '.join(allowed)}")
        for name in ("relay_reservations", "relay_circuits", "relay_circuit_mib", "relay_circuit_s"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be >= 1 (the relay library reads 0 as 'cut every circuit at once')")
        for a in [a for a in self.announce if self.announce != ["none"]] + [a for a in self.relay_via
                                                                             if a != "anchors"]:
            if not (a.startswith("/ip4/") or a.startswith("/ip6/") or a.startswith("/dns")):
                raise UserError(f"{a!r}: an address must be a multiaddr like /ip4/203.0.113.7/tcp/4001")
        for a in self.relay_via:
            if a != "anchors" and "/p2p/" not in a:
                raise UserError(f"relay_via {a!r}: a relay address needs its /p2p/PEER_ID")
        self._check_together()
        return self

    def _check_together(self) -> None:
        """Settings whose relation matters, checked together. A newcomer starts at initial_trust; when that is
        above the trust floor (newcomers are routed), all fresh reporters together must not be able to push it
        below the floor (one failure report from a fresh key would otherwise take a new worker out of routing
        for the whole epoch), so their shared budget stays below the margin."""
        margin = self.initial_trust - self.trust_floor
        if self.newcomer_budget < 0:
            raise UserError("newcomer_budget must be >= 0")
        if margin >= 0 and self.newcomer_budget >= margin - 1e-12:
            raise UserError(f"newcomer_budget {self.newcomer_budget:g} must be below initial_trust - trust_floor "
                            f"= {margin:g}: otherwise fresh keys together can push a new worker below the floor")


def metrics_bind(text: str) -> tuple[str, int]:
    """--metrics [HOST:]PORT -> (host, port); the host is loopback unless given."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]") if sep else "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) < 65536 or (sep and not host):
        raise UserError(f"metrics wants [HOST:]PORT (e.g. 9464 or 0.0.0.0:9464), not {text!r}")
    return host, int(port)


FIELDS = {f.name: f for f in fields(Settings) if f.name != "sources"}


def _coerce(name: str, value, where: str):
    f = FIELDS[name]
    typ = f.type if isinstance(f.type, str) else f.type.__name__
    try:
        if typ.startswith("list"):
            if isinstance(value, str):
                return [v for v in (x.strip() for x in value.split(",")) if v]
            if isinstance(value, list) and all(isinstance(x, str) for x in value):
                return value
            raise ValueError("expected a list of strings")
        if typ == "float":
            if isinstance(value, bool):
                raise ValueError("expected a number")
            return float(value)
        if typ == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError("expected an integer")
            return int(value)
        if typ == "bool":
            if isinstance(value, str):
                return value.lower() in ("1", "true", "yes", "on")
            return bool(value)
        if not isinstance(value, str):
            raise ValueError("expected a string")
        return value
    except ValueError as e:
        raise UserError(f"{where}: {name} = {value!r}: {e}") from None


DEFAULT_CONFIG = "config.toml"  # under GTRACD_HOME (~/.gtracd): read when present (`gtracd join` writes it)


def load_settings(config_file: str | None = None, flags: dict | None = None,
                  env: dict | None = None) -> Settings:
    """`env` None: this process's environment, and <GTRACD_HOME>/config.toml when no file is named (a given
    `env`, as in tests, reads no file it does not name)."""
    s = Settings()
    s.sources = {n: "default" for n in FIELDS}
    path = config_file or (env or os.environ).get("GTRACD_CONFIG")
    if not path and env is None and (_home() / DEFAULT_CONFIG).is_file():
        path = str(_home() / DEFAULT_CONFIG)
    if path:
        try:
            data = tomllib.loads(Path(path).read_text())
        except OSError as e:
            raise UserError(f"cannot read config file {path}: {e.strerror}") from None
        except tomllib.TOMLDecodeError as e:
            raise UserError(f"config file {path}: {e}") from None
        flat = {}
        for k, v in data.items():  # allow [sections] for readability: keys are unique across sections
            if isinstance(v, dict):
                flat.update(v)
            else:
                flat[k] = v
        for k, v in flat.items():
            name = k.replace("-", "_")
            if name not in FIELDS:
                raise UserError(f"config file {path}: unknown setting {k!r}")
            setattr(s, name, _coerce(name, v, f"config file {path}"))
            s.sources[name] = f"file {path}"
    for k, v in (env if env is not None else os.environ).items():
        if k.startswith("GTRACD_"):
            name = k[7:].lower()
            if name in FIELDS:
                setattr(s, name, _coerce(name, v, f"env {k}"))
                s.sources[name] = f"env {k}"
    for name, v in (flags or {}).items():
        if v is None:
            continue
        setattr(s, name, _coerce(name, v, f"flag --{name.replace('_', '-')}"))
        s.sources[name] = f"flag --{name.replace('_', '-')}"
    return s.validate()


def add_setting_flags(parser, names: list[str]) -> None:
    """Expose settings as --flags (default None so unset flags don't override file/env)."""
    for name in names:
        f = FIELDS[name]
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, default=None, metavar=name.upper(),
                            help=f"{f.metadata.get('help', '')} (default {_default_text(f)})")


def _default_text(f) -> str:
    if f.default is not dataclasses.MISSING:
        return repr(f.default) if f.default != "" else "''"
    return "[]"


def flags_from(ns, names: list[str]) -> dict:
    return {n: getattr(ns, n) for n in names if getattr(ns, n, None) is not None}
