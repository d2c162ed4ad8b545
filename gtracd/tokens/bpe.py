"""The BPE model of tokenizer.json, as the `tokenizers` library applies it: a word's characters (unknown ones
as byte tokens with byte_fallback, else the unk token) merged pair by pair, lowest merge rank first and the
leftmost of equal ranks first (the library's heap order, so results match it exactly)."""

from __future__ import annotations

import heapq

from .pipeline import Unsupported

WORD_CACHE = 10_000  # distinct words remembered (a bounded cache: prompts are attacker-chosen text)


class BPE:
    def __init__(self, spec: dict):
        if spec.get("type") != "BPE":
            raise Unsupported(f"tokenizer.json model {spec.get('type')!r} is not supported by gtracd's tokenizer "
                              f"(BPE only)")
        if spec.get("dropout"):
            raise Unsupported("tokenizer.json BPE dropout is not supported (it makes tokenization random)")
        self.vocab: dict[str, int] = dict(spec["vocab"])
        self.ids: dict[int, str] = {i: t for t, i in self.vocab.items()}
        self.unk = spec.get("unk_token")
        self.fuse_unk = bool(spec.get("fuse_unk"))
        self.byte_fallback = bool(spec.get("byte_fallback"))
        self.ignore_merges = bool(spec.get("ignore_merges"))
        self.prefix = spec.get("continuing_subword_prefix") or ""
        self.suffix = spec.get("end_of_word_suffix") or ""
        self.merges: dict[tuple[int, int], tuple[int, int]] = {}  # (a, b) -> (rank, merged id)
        plen = len(self.prefix)
        for rank, m in enumerate(spec.get("merges") or []):
            a, b = m.split(" ", 1) if isinstance(m, str) else m
            try:
                merged = a + (b[plen:] if plen and b.startswith(self.prefix) else b)
                self.merges[(self.vocab[a], self.vocab[b])] = (rank, self.vocab[merged])
            except KeyError:
                raise Unsupported(f"tokenizer.json BPE merge {m!r} names a token outside the vocabulary") from None
        self._cache: dict[str, list[int]] = {}

    def _unk_id(self) -> int | None:
        if self.unk is None:
            return None
        if self.unk not in self.vocab:
            raise Unsupported(f"tokenizer.json BPE unk token {self.unk!r} is not in the vocabulary")
        return self.vocab[self.unk]

    def _symbols(self, word: str) -> list[int]:
        out: list[int] = []
        unk_prev = False
        n = len(word)
        for i, ch in enumerate(word):
            tok = ch
            if self.prefix and i > 0:
                tok = self.prefix + tok
            if self.suffix and i == n - 1:
                tok = tok + self.suffix
            tid = self.vocab.get(tok)
            if tid is not None:
                out.append(tid)
                unk_prev = False
                continue
            if self.byte_fallback:
                bts = [self.vocab.get(f"<0x{b:02X}>") for b in ch.encode("utf-8")]
                if None not in bts:
                    out.extend(bts)
                    unk_prev = False
                    continue
            unk = self._unk_id()
            if unk is None:
                continue  # tokenizers drops a character it cannot represent when there is no unk token
            if not (self.fuse_unk and unk_prev):
                out.append(unk)
            unk_prev = True
        return out

    def word(self, word: str) -> list[int]:
        hit = self._cache.get(word)
        if hit is not None:
            return hit
        if self.ignore_merges and word in self.vocab:
            ids = [self.vocab[word]]
        else:
            ids = self._merge(self._symbols(word))
        if len(self._cache) >= WORD_CACHE:
            self._cache.clear()
        self._cache[word] = ids
        return ids

    def _merge(self, syms: list[int]) -> list[int]:
        n = len(syms)
        if n < 2:
            return syms
        c = list(syms)
        nxt = list(range(1, n)) + [-1]
        prv = [-1] + list(range(n - 1))
        alive = [True] * n
        merges = self.merges
        heap = [(r, i, m) for i in range(n - 1) if (rm := merges.get((c[i], c[i + 1]))) for r, m in [rm]]
        heapq.heapify(heap)
        while heap:
            rank, pos, new = heapq.heappop(heap)
            if not alive[pos] or nxt[pos] < 0:
                continue
            right = nxt[pos]
            cur = merges.get((c[pos], c[right]))
            if cur is None or cur[1] != new:  # an expired entry
                continue
            c[pos] = new
            alive[right] = False
            nxt[pos] = nxt[right]
            if nxt[pos] >= 0:
                prv[nxt[pos]] = pos
            if prv[pos] >= 0:
                p = prv[pos]
                rm = merges.get((c[p], c[pos]))
                if rm:
                    heapq.heappush(heap, (rm[0], p, rm[1]))
            if nxt[pos] >= 0:
                rm = merges.get((c[pos], c[nxt[pos]]))
                if rm:
                    heapq.heappush(heap, (rm[0], pos, rm[1]))
        return [c[i] for i in range(n) if alive[i]]
