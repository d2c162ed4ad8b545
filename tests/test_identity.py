import os
import stat

import pytest

from gtracd.errors import UserError
from gtracd.identity import Identity, Keystore, decode_private, encode_private, peer_id_from_public


def test_peer_id_equals_py_libp2p():
    from libp2p.crypto.ed25519 import Ed25519PrivateKey
    from libp2p.peer.id import ID

    for _ in range(5):
        ident = Identity.generate()
        priv = Ed25519PrivateKey.from_bytes(ident.seed)
        assert priv.get_public_key().to_bytes() == ident.public
        assert ident.peer_id == ID.from_pubkey(priv.get_public_key()).to_base58()


def test_signatures_verify_across_libraries():
    from libp2p.crypto.ed25519 import Ed25519PrivateKey

    ident = Identity.generate()
    lp = Ed25519PrivateKey.from_bytes(ident.seed)
    assert lp.get_public_key().verify(b"msg", ident.sign(b"msg"))


def test_key_file_mode_0600_and_refused_if_readable(tmp_path):
    ks = Keystore(tmp_path / "k")
    ident = ks.generate("w1")
    path = ks.private_path("w1")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ks.load("w1") == ident
    os.chmod(path, 0o644)
    with pytest.raises(UserError, match="readable by group/others"):
        ks.load("w1")


def test_passphrase_round_trip_and_wrong_passphrase(tmp_path):
    ks = Keystore(tmp_path)
    ident = ks.generate("sec", passphrase=b"correct horse")
    assert ident.seed.hex() not in ks.private_path("sec").read_text()
    assert ks.load("sec", b"correct horse") == ident
    with pytest.raises(UserError, match="wrong passphrase"):
        ks.load("sec", b"battery staple")
    with pytest.raises(UserError, match="passphrase-protected"):
        ks.load("sec")


def test_corrupt_key_file(tmp_path):
    data = encode_private(Identity.generate(), "x").replace(b'"public": "', b'"public": "00')
    with pytest.raises(UserError):
        decode_private(data, None)


def test_import_export_and_anchor_keyring(tmp_path):
    a, b = Keystore(tmp_path / "a"), Keystore(tmp_path / "b")
    ident = a.generate("anchor1")
    exported = tmp_path / "anchor1.pub"
    exported.write_bytes(a.export_public("anchor1"))
    assert b.import_file(exported) == "anchor1"
    assert b.public("anchor1") == ident.public
    pid = b.trust_anchor(exported.read_text())
    assert pid == ident.peer_id == peer_id_from_public(ident.public)
    assert b.anchors() == {pid: ident.public}
    other = Identity.generate()
    b.trust_anchor(other.public.hex())
    assert set(b.anchors()) == {pid, other.peer_id}
    with pytest.raises(UserError):
        b.trust_anchor("not a key")


def test_bad_names_rejected(tmp_path):
    with pytest.raises(UserError, match="invalid key name"):
        Keystore(tmp_path).generate("../evil")
