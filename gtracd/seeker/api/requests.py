"""OpenAI-compatible request bodies to service requests, and the API's error objects (pure).

Every check says which parameter is wrong; the shapes follow what the `openai` client sends
(../shared/notes/openai-api.md). Unknown fields are ignored, as OpenAI-compatible servers do.
"""

from __future__ import annotations

import ipaddress
import json
import math
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..service import Request, Trust
from ..speculation import parse as parse_speculate

MAX_BODY = 1 << 20  # bytes of a request body
MAX_MESSAGES = 256
MAX_STOPS = 4
MAX_STOP_CHARS = 256
MAX_PROMPT_CHARS = 256 * 1024
ROLES = ("system", "user", "assistant", "developer", "tool")


@dataclass
class ApiError(Exception):
    status: int
    message: str
    type: str = "invalid_request_error"
    param: str | None = None
    code: str | None = None
    retry: bool = False  # would the same request succeed later? (x-should-retry)

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _hostname(host_header: str) -> str:
    """The host of a Host header value (`name`, `name:port`, `[v6]:port`), lower case."""
    h = host_header.strip().lower()
    if h.startswith("["):
        return h[1:h.find("]")] if "]" in h else h
    return h.rsplit(":", 1)[0] if h.count(":") == 1 else h


def check_headers(headers: dict[bytes, bytes], method: str, keyed: bool) -> None:
    """What a web page in the user's browser must not be able to do to a seeker on loopback. Without an API
    key (a loopback-only server): the Host must name a loopback host (a DNS-rebinding page sends its own
    name), and an Origin, if sent, must be a loopback one (a cross-site page's fetch carries its origin). With
    or without a key: a POST body must be declared JSON (a cross-site form or a "simple" fetch, which a
    browser sends without asking the server first, cannot declare it)."""
    if not keyed:
        host = headers.get(b"host", b"").decode("latin-1")
        if not host or not is_loopback(_hostname(host)):
            raise ApiError(403, f"this API answers on loopback names only, not Host {host[:100]!r} (give "
                                "--api-key-file to serve other names)", "invalid_request_error", None,
                           "host_not_allowed")
        origin = headers.get(b"origin", b"").decode("latin-1")
        if origin and origin != "null" and not is_loopback(urlsplit(origin).hostname or ""):
            raise ApiError(403, f"cross-origin requests are refused (Origin {origin[:100]!r})",
                           "invalid_request_error", None, "origin_not_allowed")
        if origin == "null":
            raise ApiError(403, "requests from an opaque origin are refused", "invalid_request_error", None,
                           "origin_not_allowed")
    if method == "POST":
        ctype = headers.get(b"content-type", b"").decode("latin-1").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise ApiError(415, f"send the body as application/json (got {ctype[:60] or 'no content type'!r})",
                           "invalid_request_error", None, "unsupported_media_type")


def bad(message: str, param: str | None = None, code: str | None = "invalid_value") -> ApiError:
    return ApiError(400, message, "invalid_request_error", param, code)


def parse_json(raw: bytes) -> dict:
    if len(raw) > MAX_BODY:
        raise ApiError(400, f"request body of {len(raw)} bytes exceeds {MAX_BODY}", "invalid_request_error",
                       None, "body_too_large")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise bad(f"the body is not valid JSON: {e}", None, "invalid_json") from None
    if not isinstance(body, dict):
        raise bad("the body must be a JSON object", None, "invalid_json")
    return body


def _num(body: dict, name: str, default: float, lo: float, hi: float) -> float:
    v = body.get(name, default)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi:
        raise bad(f"{name} must be a number in [{lo:g}, {hi:g}]", name)
    return float(v)


def _int(body: dict, name: str, default: int | None, lo: int, hi: int) -> int | None:
    v = body.get(name, default)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise bad(f"{name} must be an integer in [{lo}, {hi}]", name)
    return v


def _stops(body: dict) -> tuple[str, ...]:
    v = body.get("stop")
    if v is None:
        return ()
    stops = [v] if isinstance(v, str) else v
    if not isinstance(stops, list) or len(stops) > MAX_STOPS or not all(
            isinstance(s, str) and 0 < len(s) <= MAX_STOP_CHARS for s in stops):
        raise bad(f"stop must be a string or a list of at most {MAX_STOPS} non-empty strings of at most "
                  f"{MAX_STOP_CHARS} characters", "stop")
    return tuple(stops)


def _content(m: dict, i: int) -> str:
    c = m.get("content")
    if c is None:
        return ""
    if isinstance(c, str):
        return c
    if isinstance(c, list):  # content parts: text only
        parts = []
        for p in c:
            if not isinstance(p, dict) or p.get("type") != "text" or not isinstance(p.get("text"), str):
                raise bad("only text content parts are supported", f"messages[{i}].content")
            parts.append(p["text"])
        return "".join(parts)
    raise bad("content must be a string or a list of text parts", f"messages[{i}].content")


def _common(body: dict, max_tokens_cap: int, default_max: int) -> dict:
    if body.get("n", 1) not in (1, None):
        raise bad("only n = 1 is supported", "n")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise bad("stream must be a boolean", "stream")
    so = body.get("stream_options") or {}
    if not isinstance(so, dict):
        raise bad("stream_options must be an object", "stream_options")
    mt = body.get("max_completion_tokens", body.get("max_tokens"))
    max_tokens = _int({"max_tokens": mt}, "max_tokens", default_max, 1, max_tokens_cap)
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63):
        raise bad("seed must be a non-negative integer", "seed")
    ignore_eos = body.get("ignore_eos", False)
    if not isinstance(ignore_eos, bool):
        raise bad("ignore_eos must be a boolean", "ignore_eos")
    speculate = body.get("speculate")
    if speculate is not None:
        try:
            speculate = parse_speculate(speculate)
        except ValueError as e:
            raise bad(str(e), "speculate") from None
    return {"stream": stream, "include_usage": bool(so.get("include_usage", False)), "max_tokens": max_tokens,
            "ignore_eos": ignore_eos, "speculate": speculate,
            "temperature": _num(body, "temperature", 0.0, 0.0, 2.0), "top_p": _num(body, "top_p", 1.0, 0.0, 1.0),
            "seed": seed or 0, "stop": _stops(body)}


MAX_EXCLUDED = 256


def trust_terms(body: dict) -> Trust:
    """The `gtracd` extension field: {"min_trust": x, "spot_check_rate": r, "exclude_peers": [...],
    "exclude_hosts": [...]}. Stricter only: a floor or rate below the seeker's own is raised to it."""
    ext = body.get("gtracd")
    if ext is None:
        return Trust()
    if not isinstance(ext, dict) or set(ext) - {"min_trust", "spot_check_rate", "exclude_peers", "exclude_hosts"}:
        raise bad("gtracd must be an object with min_trust, spot_check_rate, exclude_peers, exclude_hosts", "gtracd")

    def ids(name: str) -> tuple[str, ...]:
        v = ext.get(name) or []
        if not isinstance(v, list) or len(v) > MAX_EXCLUDED or not all(
                isinstance(x, str) and 0 < len(x) <= 64 for x in v):
            raise bad(f"gtracd.{name} must be a list of at most {MAX_EXCLUDED} peer ids", f"gtracd.{name}")
        return tuple(sorted(set(v)))
    floor = ext.get("min_trust")
    rate = ext.get("spot_check_rate")
    return Trust(_num({"x": floor}, "x", 0.0, 0.0, 1.0) if floor is not None else None,
                 _num({"x": rate}, "x", 0.0, 0.0, 1.0) if rate is not None else None,
                 ids("exclude_peers"), ids("exclude_hosts"))


def _model(body: dict) -> str:
    m = body.get("model")
    if not isinstance(m, str) or not m:
        raise bad("model is required (GET /v1/models lists it)", "model", "missing_model")
    return m


def chat_request(body: dict, max_tokens_cap: int, default_max: int) -> tuple[str, Request, dict]:
    """(model, request, {stream, include_usage}) of a /v1/chat/completions body."""
    model = _model(body)
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise bad("messages must be a non-empty list", "messages")
    if len(msgs) > MAX_MESSAGES:
        raise bad(f"at most {MAX_MESSAGES} messages", "messages")
    pairs = []
    total = 0
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise bad(f"each message needs a role, one of {', '.join(ROLES)}", f"messages[{i}].role")
        text = _content(m, i)
        total += len(text)
        pairs.append(("system" if m["role"] == "developer" else m["role"], text))
    if total > MAX_PROMPT_CHARS:
        raise bad(f"the messages hold {total} characters, more than {MAX_PROMPT_CHARS}", "messages")
    c = _common(body, max_tokens_cap, default_max)
    req = Request(messages=tuple(pairs), max_tokens=c["max_tokens"], temperature=c["temperature"], top_p=c["top_p"],
                  seed=c["seed"], stop=c["stop"], ignore_eos=c["ignore_eos"], trust=trust_terms(body),
                  speculate=c["speculate"])
    return model, req, c


def completion_request(body: dict, max_tokens_cap: int, default_max: int) -> tuple[str, Request, dict]:
    """(model, request, {stream, include_usage}) of a /v1/completions body."""
    model = _model(body)
    p = body.get("prompt")
    if isinstance(p, list) and len(p) == 1 and isinstance(p[0], str):
        p = p[0]
    if not isinstance(p, str) or not p:
        raise bad("prompt must be a non-empty string", "prompt")
    if len(p) > MAX_PROMPT_CHARS:
        raise bad(f"the prompt holds {len(p)} characters, more than {MAX_PROMPT_CHARS}", "prompt")
    if body.get("echo"):
        raise bad("echo is not supported", "echo")
    c = _common(body, max_tokens_cap, default_max)
    req = Request(prompt=p, max_tokens=c["max_tokens"], temperature=c["temperature"], top_p=c["top_p"],
                  seed=c["seed"], stop=c["stop"], ignore_eos=c["ignore_eos"], trust=trust_terms(body),
                  speculate=c["speculate"])
    return model, req, c
