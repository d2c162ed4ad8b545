"""Ed25519 identities, libp2p peer ids, and the on-disk keystore.

A gtracd identity is an Ed25519 key (`cryptography`). Its peer id is exactly the libp2p PeerID that
py-libp2p derives for the same key (identity multihash of the protobuf-encoded public key, base58btc),
computed here without importing libp2p (that import costs ~0.8 s on a phone).

Keystore layout (default ``~/.gtracd/keys``)::

    NAME.key        private key, JSON, mode 0600 (refused if group/world readable)
    NAME.pub        public key, JSON
    anchors/ID.pub  keyring of trusted anchors (public keys only)
    anchors/keyring.json  the keyring's history of quorum-signed updates and its revoked keys (gtracd.keyring)
"""

from __future__ import annotations

import base64
import fcntl
import functools
import json
import os
import re
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from .errors import UserError

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
KEY_FILE_FORMAT = "gtracd-ed25519-v1"


def b58encode(data: bytes) -> str:
    n = int.from_bytes(data, "big")
    out = []
    while n:
        n, r = divmod(n, 58)
        out.append(_B58[r])
    pad = len(data) - len(data.lstrip(b"\0"))
    return "1" * pad + "".join(reversed(out))


def peer_id_from_public(pub: bytes) -> str:
    """libp2p PeerID of a raw 32-byte Ed25519 public key.

    protobuf PublicKey{Type=Ed25519(1), Data=pub} is 36 bytes (<= 42) so libp2p uses the identity
    multihash: 0x00, len, bytes.
    """
    if len(pub) != 32:
        raise ValueError("ed25519 public key must be 32 bytes")
    proto = b"\x08\x01\x12\x20" + pub
    return b58encode(b"\x00" + bytes([len(proto)]) + proto)


def b58decode(text: str) -> bytes:
    n = 0
    for ch in text:
        i = _B58.find(ch)
        if i < 0:
            raise ValueError(f"not base58: {ch!r}")
        n = n * 58 + i
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    return b"\0" * (len(text) - len(text.lstrip("1"))) + body


def public_from_peer_id(peer_id: str) -> bytes | None:
    """The Ed25519 public key inside an identity-multihash peer id (None if it is not one)."""
    try:
        raw = b58decode(peer_id)
    except ValueError:
        return None
    if len(raw) != 38 or raw[:6] != b"\x00\x24\x08\x01\x12\x20":
        return None
    return raw[6:]


def verify(pub: bytes, sig: bytes, msg: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(pub).verify(sig, msg)
        return True
    except (InvalidSignature, ValueError):
        return False


@dataclass(frozen=True)
class Identity:
    """A private Ed25519 key with its derived public key and peer id."""

    seed: bytes  # 32-byte private seed (== cryptography's raw private bytes == libp2p's from_bytes input)

    @classmethod
    def generate(cls) -> Identity:
        return cls(Ed25519PrivateKey.generate().private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()))

    # parsed once (a parse costs as much as a signature); cached_property stores beside the frozen field
    @functools.cached_property
    def _key(self) -> Ed25519PrivateKey:
        return Ed25519PrivateKey.from_private_bytes(self.seed)

    @functools.cached_property
    def public(self) -> bytes:
        return self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @functools.cached_property
    def peer_id(self) -> str:
        return peer_id_from_public(self.public)

    def sign(self, msg: bytes) -> bytes:
        return self._key.sign(msg)

    def signer(self):
        """A fast signing callable (keeps the parsed key)."""
        key = self._key
        return key.sign

    def __repr__(self) -> str:  # never print the seed
        return f"Identity({self.peer_id})"


# ---------------------------------------------------------------- keystore


def default_keystore() -> Path:
    env = os.environ.get("GTRACD_KEYSTORE")
    return Path(env) if env else Path.home() / ".gtracd" / "keys"


def _check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise UserError(f"invalid key name {name!r}: use letters, digits, '_', '.', '-' (max 64)")
    return name


def _kdf(passphrase: bytes, salt: bytes) -> bytes:
    return Scrypt(salt=salt, length=32, n=2**15, r=8, p=1).derive(passphrase)


def encode_private(ident: Identity, name: str, passphrase: bytes | None = None) -> bytes:
    doc: dict = {"format": KEY_FILE_FORMAT, "name": name, "peer_id": ident.peer_id, "public": ident.public.hex()}
    if passphrase:
        salt, nonce = os.urandom(16), os.urandom(12)
        ct = ChaCha20Poly1305(_kdf(passphrase, salt)).encrypt(nonce, ident.seed, ident.public)
        doc["encrypted"] = {
            "kdf": "scrypt", "n": 2**15, "r": 8, "p": 1, "salt": salt.hex(),
            "aead": "chacha20poly1305", "nonce": nonce.hex(), "ciphertext": ct.hex(),
        }
    else:
        doc["seed"] = ident.seed.hex()
    return (json.dumps(doc, indent=1) + "\n").encode()


def decode_private(data: bytes, passphrase: bytes | None, where: str = "key file") -> Identity:
    try:
        doc = json.loads(data)
        if doc.get("format") != KEY_FILE_FORMAT:
            raise ValueError("unknown format")
        pub = bytes.fromhex(doc["public"])
        if "encrypted" in doc:
            if not passphrase:
                raise UserError(f"{where} is passphrase-protected: give --passphrase-file (or GTRACD_PASSPHRASE_FILE)")
            enc = doc["encrypted"]
            key = Scrypt(salt=bytes.fromhex(enc["salt"]), length=32, n=int(enc["n"]), r=int(enc["r"]),
                         p=int(enc["p"])).derive(passphrase)
            try:
                seed = ChaCha20Poly1305(key).decrypt(bytes.fromhex(enc["nonce"]), bytes.fromhex(enc["ciphertext"]), pub)
            except InvalidTag:
                raise UserError(f"wrong passphrase for {where}") from None
        else:
            seed = bytes.fromhex(doc["seed"])
    except UserError:
        raise
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(f"{where} is not a gtracd private key file ({e})") from None
    ident = Identity(seed)
    if ident.public != pub:
        raise UserError(f"{where} is corrupt: public key does not match the private key")
    return ident


def encode_public(pub: bytes, name: str) -> bytes:
    doc = {"format": KEY_FILE_FORMAT + "-public", "name": name, "peer_id": peer_id_from_public(pub), "public": pub.hex()}
    return (json.dumps(doc, indent=1) + "\n").encode()


def parse_public(text: str, where: str = "public key") -> tuple[str, bytes]:
    """(name, 32-byte key) from an exported public key file's text, or a bare 64-hex key."""
    s = text.strip()
    if re.fullmatch(r"[0-9a-fA-F]{64}", s):
        pub = bytes.fromhex(s)
        return peer_id_from_public(pub), pub
    try:
        doc = json.loads(s)
        pub = bytes.fromhex(doc["public"])
        if len(pub) != 32:
            raise ValueError("not 32 bytes")
        return str(doc.get("name") or peer_id_from_public(pub)), pub
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(f"{where}: not a gtracd public key (file or 64 hex digits): {e}") from None


def _write_private_file(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


class Keystore:
    def __init__(self, root: Path | str | None = None):
        self.root = Path(root) if root else default_keystore()

    @property
    def anchors_dir(self) -> Path:
        return self.root / "anchors"

    def _ensure(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)

    def private_path(self, name: str) -> Path:
        return self.root / f"{_check_name(name)}.key"

    def generate(self, name: str, passphrase: bytes | None = None) -> Identity:
        self._ensure()
        path = self.private_path(name)
        if path.exists():
            raise UserError(f"key {name!r} already exists at {path}")
        ident = Identity.generate()
        self._store(name, ident, passphrase)
        return ident

    def _store(self, name: str, ident: Identity, passphrase: bytes | None) -> None:
        _write_private_file(self.private_path(name), encode_private(ident, name, passphrase))
        (self.root / f"{name}.pub").write_bytes(encode_public(ident.public, name))

    def load(self, name: str, passphrase: bytes | None = None) -> Identity:
        path = self.private_path(name)
        if not path.exists():
            raise UserError(f"no key named {name!r} in {self.root} (create it: gtracd keys gen {name})")
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise UserError(f"{path} is readable by group/others (mode {mode:o}); fix with: chmod 600 {path}")
        return decode_private(path.read_bytes(), passphrase, str(path))

    def load_or_create(self, name: str, passphrase: bytes | None = None) -> Identity:
        if self.private_path(name).exists():
            return self.load(name, passphrase)
        return self.generate(name, passphrase)

    def names(self) -> list[str]:
        """Every key in the store: private ones and imported public ones."""
        if not self.root.is_dir():
            return []
        return sorted({p.stem for p in self.root.glob("*.key")} | {p.stem for p in self.root.glob("*.pub")})

    def public(self, name: str) -> bytes:
        pubp = self.root / f"{_check_name(name)}.pub"
        if pubp.exists():
            return parse_public(pubp.read_text(), str(pubp))[1]
        path = self.private_path(name)
        if not path.exists():
            raise UserError(f"no key named {name!r} in {self.root}")
        try:
            return bytes.fromhex(json.loads(path.read_bytes())["public"])
        except (ValueError, KeyError) as e:
            raise UserError(f"{path} is not a gtracd key file ({e})") from None

    def export_public(self, name: str) -> bytes:
        return encode_public(self.public(name), name)

    def import_file(self, path: Path, name: str | None = None, passphrase: bytes | None = None) -> str:
        """Import a private key file (kept encrypted as it is) or a public key (into the store as NAME.pub)."""
        self._ensure()
        try:
            data = path.read_bytes()
        except OSError as e:
            raise UserError(f"cannot read {path}: {e.strerror}") from None
        try:
            doc = json.loads(data)
        except ValueError:
            raise UserError(f"{path} is not a gtracd key file") from None
        if isinstance(doc, dict) and doc.get("format") == KEY_FILE_FORMAT:
            name = _check_name(name or doc.get("name") or path.stem)
            if self.private_path(name).exists():
                raise UserError(f"key {name!r} already exists")
            pub = bytes.fromhex(doc["public"])
            if "seed" in doc and Identity(bytes.fromhex(doc["seed"])).public != pub:
                raise UserError(f"{path} is corrupt: public key does not match the private key")
            _write_private_file(self.private_path(name), data)
            (self.root / f"{name}.pub").write_bytes(encode_public(pub, name))
            return name
        pname, pub = parse_public(data.decode(errors="replace"), str(path))
        name = _check_name(name or pname)
        if (self.root / f"{name}.pub").exists():
            raise UserError(f"key {name!r} already exists")
        (self.root / f"{name}.pub").write_bytes(encode_public(pub, name))
        return name

    def remove(self, name: str) -> None:
        found = False
        for suffix in (".key", ".pub"):
            p = self.root / f"{_check_name(name)}{suffix}"
            if p.exists():
                p.unlink()
                found = True
        if not found:
            raise UserError(f"no key named {name!r} in {self.root}")

    # ---- anchor keyring
    def trust_anchor(self, text: str) -> str:
        name, pub = parse_public(text)
        pid = peer_id_from_public(pub)
        if pid in self.revoked():
            raise UserError(f"anchor {pid} was revoked (keyring update); a revoked key is never trusted again")
        self.anchors_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        (self.anchors_dir / f"{pid}.pub").write_bytes(encode_public(pub, name))
        return pid

    def anchors(self) -> dict[str, bytes]:
        """peer id -> public key of every trusted anchor (a revoked one never counts, whatever files remain)."""
        out = {}
        revoked = self.revoked()
        if self.anchors_dir.is_dir():
            for p in sorted(self.anchors_dir.glob("*.pub")):
                _, pub = parse_public(p.read_text(), str(p))
                pid = peer_id_from_public(pub)
                if pid not in revoked:
                    out[pid] = pub
        return out

    @property
    def keyring_path(self) -> Path:
        """The keyring's history: {serial, revoked and retired: {peer id: time}, chain: [applied updates]}
        (gtracd.keyring)."""
        return self.anchors_dir / "keyring.json"

    def keyring_doc(self) -> dict:
        try:
            doc = json.loads(self.keyring_path.read_text())
        except FileNotFoundError:
            return {"serial": 0, "revoked": {}, "chain": []}
        except (OSError, ValueError) as e:
            raise UserError(f"{self.keyring_path} is unreadable ({e}): restore it from a backup or another "
                            "device's keystore") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("serial"), int) or not isinstance(
                doc.get("revoked"), dict) or not isinstance(doc.get("chain"), list):
            raise UserError(f"{self.keyring_path} is not a gtracd keyring history")
        return doc

    def revoked(self) -> dict[str, float]:
        """peer id -> the time from which what that anchor key signed is refused."""
        return {str(k): float(v) for k, v in self.keyring_doc()["revoked"].items()}

    def write_keyring(self, add: dict[str, bytes], drop, doc: dict) -> bool:
        """An update applied: the anchors it added and dropped (other .pub files untouched: an operator may have
        trusted one since), then the history (atomic). Under a lock, and only if the keystore is not already
        at that serial or later (every daemon on a device applies the same update). True if written."""
        self.anchors_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.anchors_dir / ".keyring.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self.keyring_doc()["serial"] >= doc["serial"]:
                return False
            for pid in drop:
                (self.anchors_dir / f"{pid}.pub").unlink(missing_ok=True)
            for pid, pub in add.items():
                path = self.anchors_dir / f"{pid}.pub"
                if not path.exists():
                    path.write_bytes(encode_public(pub, pid))
            fd, tmp = tempfile.mkstemp(dir=self.anchors_dir, prefix=".keyring-", suffix=".tmp")
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(doc))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.keyring_path)
        return True


def read_passphrase_file(path: str | None) -> bytes | None:
    path = path or os.environ.get("GTRACD_PASSPHRASE_FILE")
    if not path:
        return None
    try:
        data = Path(path).read_bytes().rstrip(b"\r\n")
    except OSError as e:
        raise UserError(f"cannot read passphrase file {path}: {e.strerror}") from None
    if not data:
        raise UserError(f"passphrase file {path} is empty")
    return data


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
