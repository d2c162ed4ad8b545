"""A model's tokenizer, torch-free: tokenizer.json read with the `tokenizers` library's semantics, so a
seeker (or a phone) turns its own text into token ids and the ids a chain returns into the text a user reads.

`Tokenizer.from_files` takes the model card's files (name -> bytes): tokenizer.json, and for the chat
template, special tokens and end-of-turn ids the files transformers reads them from (tokenizer_config.json,
chat_template.jinja / .json, special_tokens_map.json, generation_config.json, config.json)."""

from __future__ import annotations

import json
import re

from ..errors import UserError
from .bpe import BPE
from .chat import render
from .pipeline import decoder, normalizer, post_processor, pre_tokenizer

TOKENIZER_MAX = 64 << 20  # tokenizer.json of the largest vocabularies (Gemma 3: ~33 MB)
SPECIAL_NAMES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


def _json(files: dict[str, bytes], name: str) -> dict:
    raw = files.get(name)
    if raw is None:
        return {}
    try:
        doc = json.loads(raw)
    except ValueError:
        raise UserError(f"the model's {name} is not valid JSON") from None
    if not isinstance(doc, dict):
        raise UserError(f"the model's {name} is not a JSON object")
    return doc


def _token_text(v) -> str | None:
    if isinstance(v, str):
        return v
    if isinstance(v, dict) and isinstance(v.get("content"), str):
        return v["content"]
    return None


def _ids(v) -> list[int]:
    if isinstance(v, int) and not isinstance(v, bool):
        return [v]
    if isinstance(v, list):
        return [x for x in v if isinstance(x, int) and not isinstance(x, bool)]
    return []


class Tokenizer:
    """`doc` None: a model without tokenizer.json (token ids only: no text is shown, prompts must be ids)."""

    def __init__(self, doc: dict | None, config: dict | None = None, chat_template: str | None = None,
                 eos_ids: list[int] | None = None, vocab_size: int | None = None):
        self.has_text = doc is not None
        doc = doc or {"model": {"type": "BPE", "vocab": {}, "merges": []}}
        self.model = BPE(doc.get("model") or {})
        self.normalize = normalizer(doc.get("normalizer"))
        self.pre = pre_tokenizer(doc.get("pre_tokenizer"))
        self.decode_chain = decoder(doc.get("decoder"))
        self.added: dict[str, int] = {}
        self.added_ids: dict[int, str] = {}
        self.special: set[int] = set()
        alts = []
        for t in doc.get("added_tokens") or []:
            content, tid = t["content"], t["id"]
            self.added[content] = tid
            self.added_ids[tid] = content
            if t.get("special"):
                self.special.add(tid)
            alts.append((content, t.get("lstrip", False), t.get("rstrip", False)))
        alts.sort(key=lambda a: -len(a[0]))  # leftmost-longest, as tokenizers' Aho-Corasick matcher
        ws = r"[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*"
        self._added_re = re.compile("|".join(
            f"(?P<t{i}>{ws if lstrip else ''}{re.escape(c)}{ws if rstrip else ''})"
            for i, (c, lstrip, rstrip) in enumerate(alts))) if alts else None
        self._added_order = [self.added[c] for c, _l, _r in alts]
        self.post = post_processor(doc.get("post_processor"))
        config = config or {}
        self.chat_template = chat_template
        self.special_map = {k: s for k in SPECIAL_NAMES if (s := _token_text(config.get(k))) is not None}
        self.eos = set(eos_ids or [])
        known = max([*self.model.ids, *self.added_ids, -1]) + 1
        self.vocab_size = vocab_size if vocab_size and vocab_size > 0 else known  # ids a model may emit

    @classmethod
    def from_files(cls, files: dict[str, bytes]) -> Tokenizer:
        raw = files.get("tokenizer.json")
        if raw is not None and len(raw) > TOKENIZER_MAX:
            raise UserError(f"the model's tokenizer.json of {len(raw)} bytes exceeds {TOKENIZER_MAX}")
        doc = _json(files, "tokenizer.json") if raw is not None else None
        tcfg = _json(files, "tokenizer_config.json")
        special = {**_json(files, "special_tokens_map.json"), **tcfg}
        template = None
        if files.get("chat_template.jinja") is not None:
            template = files["chat_template.jinja"].decode("utf-8", errors="strict")
        elif files.get("chat_template.json") is not None:
            template = _json(files, "chat_template.json").get("chat_template")
        elif isinstance(tcfg.get("chat_template"), str):
            template = tcfg["chat_template"]
        # the worker's rule (engine/server.py): generation_config's eos ids, else config's
        mcfg = _json(files, "config.json")
        text_cfg = mcfg.get("text_config") if isinstance(mcfg.get("text_config"), dict) else {}
        eos = _ids(_json(files, "generation_config.json").get("eos_token_id")) or \
            _ids(mcfg.get("eos_token_id")) or _ids(text_cfg.get("eos_token_id"))
        vocab = mcfg.get("vocab_size", text_cfg.get("vocab_size"))
        return cls(doc, special, template, eos, vocab if isinstance(vocab, int) else None)

    # ---------------------------------------------------------------------------------------------- encode
    def _segments(self, text: str) -> list[str | int]:
        if self._added_re is None:
            return [text]
        out: list[str | int] = []
        last = 0
        for m in self._added_re.finditer(text):
            if m.start() > last:
                out.append(text[last:m.start()])
            out.append(self._added_order[int(m.lastgroup[1:])])
            last = m.end()
        if last < len(text):
            out.append(text[last:])
        return out

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        if not self.has_text:
            raise UserError("the model has no tokenizer.json: send token ids")
        ids: list[int] = []
        for i, seg in enumerate(self._segments(text)):
            if isinstance(seg, int):
                ids.append(seg)
                continue
            norm = self.normalize(seg)
            for piece in self.pre([norm], i == 0):
                if piece:
                    ids.extend(self.model.word(piece))
        return self.post(ids) if add_special_tokens else ids

    def chat(self, messages: list[dict], add_generation_prompt: bool = True) -> list[int]:
        """apply_chat_template(messages, add_generation_prompt, tokenize=True) as transformers does it: the
        template rendered (sandboxed), then encoded without adding special tokens."""
        if self.chat_template is None:
            raise UserError("the model has no chat template: send a plain prompt")
        msgs = [{k: v for k, v in m.items() if v is not None} for m in messages]
        text = render(self.chat_template, msgs, add_generation_prompt, self.special_map)
        return self.encode(text, add_special_tokens=False)

    # ---------------------------------------------------------------------------------------------- decode
    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        toks = []
        for i in ids:
            if skip_special_tokens and i in self.special:
                continue
            t = self.added_ids.get(i)
            if t is None:
                t = self.model.ids.get(i)
            if t is not None:
                toks.append(t)
        return "".join(self.decode_chain(toks)) if toks else ""

    def piece(self, ctx: list[int], token: int) -> str:
        """The text `token` adds after `ctx` : decode(ctx + [t]) - decode(ctx),
        incomplete UTF-8 (U+FFFD at the end) held back until a later token completes it."""
        prev = self.decode(ctx).rstrip("\ufffd") if ctx else ""
        full = self.decode(list(ctx) + [token]).rstrip("\ufffd")
        return full[len(prev):] if full.startswith(prev) else full[len(self.decode(ctx)):]
