"""Text and token ids without torch: a pure-Python reading of a model's tokenizer.json (BPE, byte-level or
SentencePiece-style), its chat template (sandboxed jinja2) and its end-of-turn ids. The seeker derives what a
user reads from token ids with it, so no worker chooses the text (seekers and phones run it; workers use
transformers and must agree: tests/test_tokens.py holds the two equal)."""
