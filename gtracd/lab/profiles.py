"""Behaviour profiles and host types, read from `profiles/*.toml` (pure: parsing and validation only)."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError

# numeric behaviour fields a profile gives as [lo, hi] ranges; the first four are the reference's columns
BASE_FIELDS = ("fail_rate", "trust0", "net_delay_ms", "cpu_load")
EXTRA_FIELDS = ("byzantine_rate", "crash_after_requests", "crash_at_s", "flap_period_s", "flap_down_s",
                "delay_growth_per_min")
RATE_FIELDS = ("fail_rate", "trust0", "byzantine_rate")  # must lie in [0, 1]


@dataclass(frozen=True)
class HostType:
    code: str
    name: str
    speed: float
    hosts: tuple[str, ...]


@dataclass(frozen=True)
class Profile:
    name: str  # file stem, e.g. honey_pot
    template: str  # written in plans' template column
    aliases: tuple[str, ...]
    description: str
    host_types: tuple[str, ...]
    ranges: dict = field(hash=False)  # field -> (lo, hi); for `normal`, host type -> field -> (lo, hi)
    by_host_type: bool = False

    def ranges_for(self, host_type: str) -> dict[str, tuple[float, float]]:
        if self.by_host_type:
            if host_type not in self.ranges:
                raise UserError(f"profile {self.name} has no ranges for host type {host_type}")
            return self.ranges[host_type]
        return self.ranges

    def placeable_on(self) -> tuple[str, ...]:
        return tuple(self.ranges) if self.by_host_type else self.host_types


@dataclass(frozen=True)
class Catalog:
    profiles: dict[str, Profile]
    hosts: dict[str, HostType]
    cpu_unit_ms: float
    compute_ms_per_layer: float = 0.0

    def profile(self, template: str) -> Profile | None:
        """The profile a plan's template name denotes (its own name, its template or an alias)."""
        for p in self.profiles.values():
            if template == p.name or template == p.template or template in p.aliases:
                return p
        return None


def default_dir() -> Path:
    env = os.environ.get("GTRACD_PROFILES")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parents[2] / "profiles"  # the source tree's top-level profiles/
    return here


def _range(v, where: str) -> tuple[float, float]:
    if (not isinstance(v, list) or len(v) != 2 or not all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                          for x in v)):
        raise UserError(f"{where}: expected [lo, hi]")
    lo, hi = float(v[0]), float(v[1])
    if lo > hi or lo < 0:
        raise UserError(f"{where}: need 0 <= lo <= hi, got [{v[0]}, {v[1]}]")
    return lo, hi


def _ranges(doc: dict, where: str) -> dict[str, tuple[float, float]]:
    out = {}
    for k in BASE_FIELDS + EXTRA_FIELDS:
        if k in doc:
            out[k] = _range(doc[k], f"{where}: {k}")
            if k in RATE_FIELDS and out[k][1] > 1.0:
                raise UserError(f"{where}: {k} must lie in [0, 1]")
    missing = [k for k in BASE_FIELDS if k not in out]
    if missing:
        raise UserError(f"{where}: missing {', '.join(missing)}")
    return out


def load_catalog(folder: Path | str | None = None) -> Catalog:
    folder = Path(folder) if folder else default_dir()
    hosts_file = folder / "hosts.toml"
    if not hosts_file.exists():
        raise UserError(f"no profiles folder at {folder} (hosts.toml missing); set --profiles or GTRACD_PROFILES")
    try:
        hdoc = tomllib.loads(hosts_file.read_text())
        hosts = {code: HostType(code, t["name"], float(t["speed"]), tuple(t["hosts"]))
                 for code, t in hdoc["types"].items()}
        cpu_unit = float(hdoc.get("cpu_unit_ms", 0.05))
        per_layer = float(hdoc.get("compute_ms_per_layer", 0.0))
    except (tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as e:
        raise UserError(f"{hosts_file}: {e}") from None
    profiles = {}
    for f in sorted(folder.glob("*.toml")):
        if f.name == "hosts.toml":
            continue
        try:
            doc = tomllib.loads(f.read_text())
        except tomllib.TOMLDecodeError as e:
            raise UserError(f"{f}: {e}") from None
        name = f.stem
        by = "by_host_type" in doc
        if by:
            ranges = {ht: _ranges(r, f"{f} [by_host_type.{ht}]") for ht, r in doc["by_host_type"].items()}
        else:
            ranges = _ranges(doc, str(f))
        hts = tuple(doc.get("host_types", list(ranges) if by else list(hosts)))
        unknown = [h for h in (tuple(ranges) if by else hts) if h not in hosts]
        if unknown:
            raise UserError(f"{f}: unknown host type(s) {', '.join(unknown)} (hosts.toml has {', '.join(hosts)})")
        profiles[name] = Profile(name, str(doc.get("template", name)), tuple(doc.get("aliases", [name])),
                                 str(doc.get("description", "")), hts, ranges, by)
    if not profiles:
        raise UserError(f"no profiles in {folder}")
    return Catalog(profiles, hosts, cpu_unit, per_layer)
