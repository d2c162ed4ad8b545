"""Stand-ins for compiled packages that py-libp2p imports eagerly but gtracd never calls.

`import libp2p` (0.8.1) imports QUIC, secio, mDNS, UPnP, autotls, RSA, secp256k1 and ECDSA support at once, so
coincurve, fastecdsa, pycryptodome, aioquic, pylsqpack, miniupnpc, blake3, cbor2 and mmh3 must all
import, although gtracd only runs TCP + Noise + yamux with Ed25519 keys (profiled: docs/termux.md). None of
them has an Android wheel and several do not build on Termux (coincurve#187; blake3 and cbor2 need Rust).

So when, and only when, one of these modules is *not installed*, an import finder placed last on
sys.meta_path supplies an empty stand-in: attribute access yields placeholder classes (so libp2p's module
bodies, subclasses and annotations evaluate), and using one — calling it, instantiating it — raises
StandInUsed (a TypeError) naming the missing package. A peer that insists on secp256k1/RSA keys or QUIC then fails its
handshake cleanly while Ed25519 peers connect. Installed packages are never shadowed: a full install
(servers, CI's main job) imports the real ones. `gtracd status --json` lists the stand-ins a daemon used.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types

# top-level modules libp2p imports eagerly and gtracd never calls (each verified: docs/termux.md)
NEVER_CALLED = ("coincurve", "fastecdsa", "Crypto", "aioquic", "pylsqpack", "miniupnpc", "blake3",
                "cbor2", "mmh3")
USED: set[str] = set()  # top-level names a stand-in was supplied for, in this process


class StandInUsed(TypeError):
    """A stand-in was used (called or instantiated). A TypeError, as calling a non-callable is: libraries that
    probe optional hash functions at import time (py-multihash probes blake3 and mmh3) skip it as unavailable."""


class _Placeholder(type):
    """The metaclass of placeholders: any attribute is another placeholder; using one raises."""

    def __getattr__(cls, name: str):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return _placeholder(f"{cls.__qualname__}.{name}", cls.__module__)

    def __call__(cls, *args, **kwargs):
        top = cls.__module__.split(".")[0]
        raise StandInUsed(f"{cls.__module__}.{cls.__qualname__} is not available: the package {top!r} is not "
                          "installed (gtracd runs without it; see docs/termux.md)")

    def __or__(cls, other):  # annotations like `X | None` evaluate; placeholders are never real types
        return cls

    __ror__ = __or__

    def __getitem__(cls, item):
        return cls

    def __mro_entries__(cls, bases):
        return (cls,)


def _placeholder(qualname: str, module: str) -> type:
    return _Placeholder.__new__(_Placeholder, qualname.rsplit(".", 1)[-1], (), {"__module__": module,
                                                                             "__qualname__": qualname})


class _StandInModule(types.ModuleType):
    def __getattr__(self, name: str):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return _placeholder(name, self.__name__)


class _Loader(importlib.abc.Loader):
    def create_module(self, spec):
        m = _StandInModule(spec.name)
        m.__path__ = []  # a package: its submodules come from the finder too
        m.__doc__ = f"gtracd stand-in: {spec.name.split('.')[0]} is not installed"
        return m

    def exec_module(self, module) -> None:
        USED.add(module.__name__.split(".")[0])


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] not in NEVER_CALLED:
            return None
        return importlib.machinery.ModuleSpec(fullname, _Loader(), is_package=True)


def install(prefer: bool = False) -> None:
    """Idempotent; last on sys.meta_path, so every real finder is asked first. `prefer` puts one first instead:
    stand-ins even where the real packages are installed (the tests emulate a phone that way)."""
    if prefer:
        if not isinstance(sys.meta_path[0], _Finder):
            sys.meta_path.insert(0, _Finder())
    elif not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.append(_Finder())


def installed(name: str) -> bool:
    """Is the real top-level module `name` installed (asking every finder but ours)?"""
    for f in sys.meta_path:
        if isinstance(f, _Finder) or not hasattr(f, "find_spec"):
            continue
        if f.find_spec(name, None) is not None:
            return True
    return False
