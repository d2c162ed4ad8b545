"""Chat templates rendered as transformers renders them, in jinja2's immutable sandbox (a template comes with
the model card from a peer: pinned by the model's fingerprint, and still never trusted with more than text)."""

from __future__ import annotations

import functools
import json
from datetime import datetime

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ..errors import UserError

RENDER_MAX = 16 << 20  # characters of rendered prompt


def _raise(message):
    raise jinja2.exceptions.TemplateError(message)


def _tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


class _Generation(jinja2.ext.Extension):
    """{% generation %} blocks (assistant masks in training templates) render their body."""
    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

    def _body(self, caller):
        return caller()


@functools.lru_cache(maxsize=8)
def compiled(template: str):
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[_Generation, jinja2.ext.loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    try:
        return env.from_string(template)
    except jinja2.TemplateError as e:
        raise UserError(f"the model's chat template does not compile: {e}") from None


def render(template: str, messages: list[dict], add_generation_prompt: bool, special: dict[str, str]) -> str:
    try:
        out = compiled(template).render(messages=messages, add_generation_prompt=add_generation_prompt,
                                        tools=None, documents=None, **special)
    except jinja2.TemplateError as e:
        raise UserError(f"the chat template refused the conversation: {e}") from None
    if len(out) > RENDER_MAX:
        raise UserError(f"the rendered conversation of {len(out)} characters exceeds {RENDER_MAX}")
    return out
