"""Model preparation (issue 26): GGUF converted one tensor at a time into exactly the folder the whole-model
path wrote (same fingerprint), and architectures a shard cannot host refused with the supported list."""

from __future__ import annotations

import json

import pytest

from gtracd.catalog.fingerprint import SHIPPED, fingerprint
from gtracd.catalog.names import FAMILIES
from gtracd.engine.models import resolve_model
from gtracd.errors import UserError


@pytest.mark.parametrize("model_type", ["bert", "mamba", "gemma3", None])
def test_an_unsupported_architecture_is_refused_with_the_supported_list(tmp_path, model_type):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": model_type}))
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(UserError) as e:
        resolve_model(str(tmp_path))
    assert "not supported" in str(e.value) and all(f in str(e.value) for f in FAMILIES)


@pytest.mark.model
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_smollm2_streamed_from_its_gguf_has_the_shipped_fingerprint(tmp_path):
    from gtracd.daemon.node import status_mib
    from gtracd.engine.gguf import convert
    from gtracd.engine.models import _smollm2_gguf

    convert(_smollm2_gguf(tmp_path), tmp_path)
    from transformers import AutoTokenizer

    gguf = _smollm2_gguf(tmp_path)
    AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name).save_pretrained(str(tmp_path))
    assert fingerprint(tmp_path) == SHIPPED["smollm2-135m"][0]["float32"]
    assert fingerprint(tmp_path, "int8") == SHIPPED["smollm2-135m"][0]["int8"]
    print(f"peak RSS of the converting process: {status_mib('self', 'VmHWM'):.0f} MiB")
