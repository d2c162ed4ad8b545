"""What `gtracd doctor` checks on this device without the network: keys and their modes, the keyring, listen
ports, free disk for the ledger, the model a role serves, torch where the role needs it, the phone profile's
stand-ins. Each check returns Findings: one line each, what is wrong and how to fix it."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import shutil
import socket
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..catalog.fingerprint import pinned_model, scheme_of
from ..catalog.names import BUILTIN, model_cache_dir
from ..config import metrics_bind
from ..daemon.statusfiles import collect
from ..errors import GtracError
from ..identity import Keystore, parse_public, peer_id_from_public
from ..net import standins

if TYPE_CHECKING:
    from gtracd.config import Settings

OK, WARN, FAIL = "ok", "warn", "fail"
MIN_FREE_MIB = 200  # the ledger log and checkpoints of a long-running replica, with room to spare
TORCH = "2.13.0"


@dataclass(frozen=True)
class Finding:
    check: str
    status: str  # ok | warn | fail
    message: str

    def json(self) -> dict:
        return {"check": self.check, "status": self.status, "message": self.message}


def keys(s: Settings, role: str | None) -> list[Finding]:
    ks = Keystore(s.keystore_path)
    root = ks.root
    if not root.is_dir():
        if role:
            return [Finding("keys", WARN, f"no keystore at {root}: `gtracd --role {role}` creates its key there on "
                                          "first start")]
        return [Finding("keys", WARN, f"no keystore at {root} (create a key: gtracd keys gen NAME)")]
    out = []
    mode = stat.S_IMODE(root.stat().st_mode)
    if mode & 0o077:
        out.append(Finding("keys", FAIL, f"{root} is open to group/others (mode {mode:o}): chmod 700 {root}"))
    private = sorted(root.glob("*.key"))
    for p in private:
        m = stat.S_IMODE(p.stat().st_mode)
        if m & 0o077:
            out.append(Finding("keys", FAIL, f"{p} is readable by group/others (mode {m:o}): chmod 600 {p}"))
    want = s.key or role
    if want and not (root / f"{want}.key").exists():
        out.append(Finding("keys", WARN, f"no key {want!r} in {root}: `gtracd --role {role or want}` creates it on "
                                         f"first start (or: gtracd keys gen {want})"))
    if not any(f.status == FAIL for f in out):
        out.append(Finding("keys", OK, f"{len(private)} private key(s) in {root}, modes private"))
    return out


def keyring(s: Settings, role: str | None) -> list[Finding]:
    ks = Keystore(s.keystore_path)
    d = ks.anchors_dir
    good, bad = [], []
    for p in sorted(d.glob("*.pub")) if d.is_dir() else []:
        try:
            good.append(peer_id_from_public(parse_public(p.read_text(), str(p))[1]))
        except (GtracError, OSError, ValueError) as e:
            bad.append(Finding("keyring", FAIL, f"{p} is not a public key ({e}): remove it and trust the anchor "
                                                "again"))
    if bad:
        return bad
    try:
        ks.keyring_doc()
    except GtracError as e:  # daemons would not start with it
        return [Finding("keyring", FAIL, str(e))]
    if role == "anchor" and good:
        me = s.key or "anchor"
        try:
            mine = peer_id_from_public(ks.public(me))
        except GtracError:
            mine = None
        if mine is not None and mine not in good:
            return [Finding("keyring", WARN, f"this anchor's own key {me!r} ({mine[-8:]}) is not in its keyring: "
                                             "its keyring-update quorum differs from the other devices' (trust it: "
                                             f"gtracd keys trust-anchor {ks.root / (me + '.pub')} after "
                                             f"gtracd keys export {me} --public -o that file)")]
    if not good:
        lone = role == "anchor"
        return [Finding("keyring", WARN if lone else FAIL,
                        f"the anchor keyring {d} is empty: ledger data and trust are refused from every peer "
                        "(add one: gtracd keys trust-anchor FILE|PUBKEY)" + (
                            "; a lone anchor runs without peers" if lone else ""))]
    return [Finding("keyring", OK, f"{len(good)} trusted anchor(s)")]


def ports(s: Settings) -> list[Finding]:
    out = []
    want = []
    parts = s.listen.split("/")
    if len(parts) >= 5 and parts[3] == "tcp" and parts[4].isdigit() and int(parts[4]):
        want.append(("listen", parts[2], int(parts[4])))
    if s.metrics:
        host, port = metrics_bind(s.metrics)
        if port:
            want.append(("metrics", host, port))
    for what, host, port in want:
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(fam, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError as e:
                mine = _held_by_gtracd(s, port)
                if mine:
                    out.append(Finding("ports", OK, f"{what} {host}:{port} is in use by the running {mine}"))
                else:
                    out.append(Finding("ports", FAIL, f"{what} {host}:{port} is taken or not bindable ({e.strerror}): "
                                                      "stop what holds it or choose another port"))
                continue
        out.append(Finding("ports", OK, f"{what} {host}:{port} is free"))
    if not want:
        out.append(Finding("ports", OK, f"listen {s.listen}: an ephemeral port (nothing to check)"))
    return out


def _held_by_gtracd(s: Settings, port: int) -> str | None:
    """The live gtracd daemon under this data directory listening on `port` (its status file says), if any."""
    for doc in collect(s):
        if doc.get("stale"):
            continue
        urls = [*(doc.get("addrs") or []), *(doc.get("metrics") or [])]
        if any(isinstance(u, str) and (f"/tcp/{port}/" in u + "/" or u.endswith(f":{port}")) for u in urls):
            return f"gtracd {doc.get('role')} {doc.get('name')}"
    return None


def disk(s: Settings) -> list[Finding]:
    home = s.home
    probe = home if home.exists() else next((p for p in home.parents if p.exists()), Path("/"))
    free = shutil.disk_usage(probe).free / 2**20
    ledger = sum(f.stat().st_size for f in home.rglob("*.log") if f.is_file()) / 2**20 if home.exists() else 0.0
    if free < MIN_FREE_MIB:
        return [Finding("disk", FAIL, f"{free:.0f} MiB free under {probe} (ledger logs hold {ledger:.1f} MiB): free "
                                      f"at least {MIN_FREE_MIB} MiB")]
    return [Finding("disk", OK, f"{free:.0f} MiB free under {probe}; ledger logs {ledger:.1f} MiB")]


def model(s: Settings, role: str | None) -> list[Finding]:
    if role not in ("worker", "seeker"):
        return []
    try:
        fp, layers = pinned_model(s.model, scheme_of(s.quantize))
    except GtracError as e:
        return [Finding("model", FAIL, str(e))]
    where = f"{layers} layers, " if layers else ""
    if role == "worker" and s.model in BUILTIN and not (model_cache_dir() / s.model / "config.json").exists():
        return [Finding("model", FAIL, f"{s.model} is not prepared on this device: gtracd model prepare {s.model}")]
    return [Finding("model", OK, f"{s.model}: {where}fingerprint {fp}")]


def torch(role: str | None) -> list[Finding]:
    if role != "worker":
        return []
    if importlib.util.find_spec("torch") is None:
        return [Finding("torch", FAIL, f"a worker needs torch {TORCH} (CPU): pip install 'gtracd[worker]'")]
    v = importlib.metadata.version("torch")
    if not v.startswith(TORCH):
        return [Finding("torch", WARN, f"torch {v} installed; gtracd is tested with {TORCH}")]
    return [Finding("torch", OK, f"torch {v}")]


def libp2p() -> list[Finding]:
    """libp2p imports (the phone profile leaves out compiled packages gtracd never calls: net.standins)."""
    try:
        standins.install()
        importlib.import_module("libp2p")
    except Exception as e:  # a broken install: say what
        return [Finding("libp2p", FAIL, f"libp2p does not import ({type(e).__name__}: {e}): reinstall gtracd")]
    used = sorted(standins.USED)
    return [Finding("libp2p", OK, f"libp2p {importlib.metadata.version('libp2p')}" + (
        f", stand-ins for {', '.join(used)} (the phone profile: fine)" if used else ""))]


def local(s: Settings, role: str | None) -> list[Finding]:
    return [*keys(s, role), *keyring(s, role), *ports(s), *disk(s), *model(s, role), *torch(role), *libp2p()]
