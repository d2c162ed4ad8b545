"""GGUF to a safetensors model folder, one tensor at a time (torch, transformers, gguf: inside `convert`).

transformers can load a GGUF file, but only whole: every tensor dequantized to float32 at once (Gemma 3
270M: 3.2 GB peak for a 1.07 GB model). This converter reads the GGUF's metadata with transformers (config,
tokenizer, the tensor-name map and the family's tensor fix-ups: Llama's q/k permutation, Gemma's norm
offset), then writes `model.safetensors` itself, streaming: the header first (names and shapes are known
from the metadata), then each tensor dequantized, fixed up and written in turn. Peak memory is one tensor
on top of the tokenizer.

The file is byte for byte what `save_pretrained` writes (the same header, tensor order and padding), and the
config files are written by the same calls, so a model prepared this way has the fingerprint it always had
(catalog.fingerprint.SHIPPED; tested).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from ..catalog.names import unsupported
from ..errors import UserError

ALIGN = 8  # safetensors pads its header with spaces to a multiple of 8 bytes
CHUNK = 32 << 20  # bytes of float32 a big tensor is dequantized in at a time
# transformers' GGUF tensor fix-ups that keep shapes and rows: none, Llama's q/k permutation (whole tensors:
# never sliced), Gemma's norm offset (elementwise)
ROW_SAFE = {"TensorProcessor", "LlamaTensorProcessor", "Gemma2TensorProcessor"}


def convert(gguf_path: Path, out: Path) -> None:
    """Write config, generation config and weights of the GGUF at `gguf_path` into the folder `out` (the
    tokenizer is the caller's). torch, transformers, numpy and gguf are imported here: `engine.models` (the
    torch-free door) imports this module at the top."""
    import numpy as np
    import torch
    from gguf import GGUFReader, dequantize
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig
    from transformers.modeling_gguf_pytorch_utils import (
        TENSOR_PROCESSORS,
        TensorProcessor,
        get_gguf_hf_weights_map,
        load_gguf_checkpoint,
        read_field,
    )

    cfg = AutoConfig.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    why = unsupported(cfg.model_type)
    if why:
        raise UserError(f"{gguf_path.name}: {why}")
    parsed = load_gguf_checkpoint(str(gguf_path), return_tensors=False)
    reader = GGUFReader(str(gguf_path))
    arch = read_field(reader, "general.architecture")[0]
    cls = TENSOR_PROCESSORS.get(arch, TensorProcessor)
    if cls.__name__ not in ROW_SAFE:  # a fix-up that transposes or reshapes breaks the streamed layout
        raise UserError(f"{gguf_path.name}: streaming a {arch} GGUF is not supported (its tensors need {cls.__name__})")
    processor = cls(config=parsed["config"])
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    mapping = get_gguf_hf_weights_map(model, processor)
    wanted = set(model.state_dict())
    if getattr(model.config, "tie_word_embeddings", False):
        wanted.discard("lm_head.weight")  # a tied head is the embedding: save_pretrained leaves it out
    by_name: dict[str, object] = {}
    for t in reader.tensors:
        hf = mapping.get(processor.process(weights=np.zeros(0), name=t.name, tensor_key_mapping=mapping,
                                           parsed_parameters=parsed).name)
        if hf in wanted:
            by_name[hf] = t
    missing = wanted - set(by_name)
    if missing:
        raise UserError(f"{gguf_path.name}: no tensor for {sorted(missing)[0]} ({len(missing)} missing)")
    names = sorted(by_name)
    shapes = {n: [int(x) for x in reversed(by_name[n].shape.tolist())] for n in names}
    header: dict = {"__metadata__": {"format": "pt"}}
    offset = 0
    for n in names:
        size = int(np.prod(shapes[n])) * 4
        header[n] = {"dtype": "F32", "shape": shapes[n], "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % ALIGN)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "model.safetensors", "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)) + raw)
        for n in names:
            t = by_name[n]
            rows = shapes[n][0] if len(shapes[n]) > 1 else 1
            # a big tensor (an embedding: 671 MB in Gemma 3) in slices of rows, unless its fix-up mixes rows
            step = rows if (".attn_q." in t.name or ".attn_k." in t.name or len(shapes[n]) != 2) else \
                max(1, CHUNK // (4 * shapes[n][1]))
            done = 0
            for a in range(0, rows, step):
                part = t.data[a:a + step] if step < rows else t.data
                w = processor.process(weights=dequantize(part, t.tensor_type), name=t.name, tensor_key_mapping=mapping,
                                      parsed_parameters=parsed).weights
                w = np.ascontiguousarray(w, dtype="<f4")
                fh.write(memoryview(w).cast("B"))
                done += w.size
                del w
            if done != int(np.prod(shapes[n])):
                raise UserError(f"{gguf_path.name}: tensor {t.name} holds {done} values, not {shapes[n]}")
    model.config.architectures = [type(model).__name__]
    model.config.save_pretrained(str(out))
    if model.can_generate():
        GenerationConfig.from_model_config(model.config).save_pretrained(str(out))
