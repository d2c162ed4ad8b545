"""The OpenAI-compatible HTTP API as a plain ASGI app over the seeker's service (seeker/service.py).

GET /v1/models, POST /v1/completions, POST /v1/chat/completions, stream true and false; errors as
{"error": {message, type, param, code}} (../shared/notes/openai-api.md). Each request runs in its own
nursery with a task that watches for the client's disconnect: when the client goes away the request's scope
is cancelled and the service cancels the session on every hop. Bodies are read with a size cap while they
arrive. A plain ASGI app rather than a framework's streaming response: the disconnect, the generation and the
SSE writer are three tasks of one nursery, with nothing left running when the request returns.
"""

from __future__ import annotations

import hmac
import json
import math
import os
import time

import trio

from ...daemon.httpd import lifespan
from ..generation import GenerationFailed
from ..service import Busy, Completion
from .requests import MAX_BODY, ApiError, chat_request, check_headers, completion_request, parse_json

READ_TIMEOUT_S = 30.0  # for the whole request body


def _headers(extra: dict | None = None) -> list[tuple[bytes, bytes]]:
    h = {"content-type": "application/json", **(extra or {})}
    return [(k.encode(), v.encode()) for k, v in h.items()]


def failure(e: GenerationFailed) -> ApiError:
    """A chain failure as the client sees it."""
    if e.code == "context_length_exceeded":
        return ApiError(400, str(e), "invalid_request_error", "messages", "context_length_exceeded")
    if e.code == "bad_prompt":
        return ApiError(400, str(e), "invalid_request_error", "messages", "bad_prompt")
    if e.code == "unsupported_model":
        return ApiError(501, str(e), "service_unavailable", None, "unsupported_model")
    if e.code == "no_route":  # no worker serves the model right now: retrying at once will not help
        return ApiError(503, str(e), "service_unavailable", None, "no_route")
    return ApiError(503, str(e), "service_unavailable", None, "chain_failed", retry=True)


class Api:
    def __init__(self, service, model_name: str, api_key: str | None = None, max_tokens_cap: int = 4096,
                 default_max_tokens: int = 256):
        self.service = service
        self.model_name = model_name
        self.api_key = api_key
        self.max_tokens_cap = max_tokens_cap
        self.default_max_tokens = default_max_tokens
        self.counters = {"requests": 0, "errors": 0, "disconnects": 0}

    # ---------------------------------------------------------------- ASGI
    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            return await lifespan(receive, send)
        if scope["type"] != "http":
            return
        self.counters["requests"] += 1
        started = [False]

        async def start(status: int, headers) -> None:
            started[0] = True
            await send({"type": "http.response.start", "status": status, "headers": headers})

        try:
            check_headers(dict(scope.get("headers") or []), scope["method"], self.api_key is not None)
            self._authorize(scope)
            path, method = scope["path"].rstrip("/") or "/", scope["method"]
            if path == "/v1/models":
                if method != "GET":
                    raise ApiError(405, "use GET", "invalid_request_error", None, "method_not_allowed")
                await self._json(start, send, 200, self._models())
            elif path in ("/v1/chat/completions", "/v1/completions"):
                if method != "POST":
                    raise ApiError(405, "use POST", "invalid_request_error", None, "method_not_allowed")
                body = parse_json(await self._read_body(receive))
                chat = path == "/v1/chat/completions"
                parse = chat_request if chat else completion_request
                model, req, opts = parse(body, self.max_tokens_cap, self.default_max_tokens)
                self._check_model(model)
                await self._watched(receive, lambda: self._generate(start, send, chat, req, opts))
            elif path == "/health":  # readiness, for load balancers and service managers: 503 until a route
                r = self.service.readiness()
                await self._json(start, send, 200 if r["ready"] else 503,
                                 {"ok": r["ready"], "ready": r["ready"], "why": r["why"], "model": self.service.model()})
            else:
                raise ApiError(404, f"no route {method} {path}", "invalid_request_error", None, "not_found")
        except ApiError as e:
            self.counters["errors"] += 1
            if not started[0]:
                await self._json(start, send, e.status, e.body(), e)

    def _authorize(self, scope) -> None:
        if self.api_key is None:
            return
        auth = dict(scope.get("headers") or []).get(b"authorization", b"").decode("latin-1")
        given = auth[7:] if auth.lower().startswith("bearer ") else ""
        if not hmac.compare_digest(given.encode(), self.api_key.encode()):
            raise ApiError(401, "a valid API key is required (Authorization: Bearer KEY)", "authentication_error",
                           None, "invalid_api_key")

    async def _read_body(self, receive) -> bytes:
        chunks, size = [], 0
        with trio.move_on_after(READ_TIMEOUT_S) as scope:
            while True:
                msg = await receive()
                if msg["type"] == "http.disconnect":  # nobody is left to answer
                    raise ApiError(400, "the client went away while sending the body", code="disconnected")
                chunk = msg.get("body", b"")
                size += len(chunk)
                if size > MAX_BODY:
                    raise ApiError(400, f"request body exceeds {MAX_BODY} bytes", "invalid_request_error", None,
                                   "body_too_large")
                chunks.append(chunk)
                if not msg.get("more_body", False):
                    return b"".join(chunks)
        if scope.cancelled_caught:
            raise ApiError(408, f"the request body did not arrive within {READ_TIMEOUT_S:g} s",
                           "invalid_request_error", None, "timeout")
        raise AssertionError("unreachable")

    async def _json(self, start, send, status: int, obj: dict, err: ApiError | None = None) -> None:
        extra = {}
        if err is not None and not err.retry and (status == 429 or status >= 500):
            extra["x-should-retry"] = "false"
        if err is not None and status == 429:
            extra["retry-after"] = "1"
        if err is not None and err.code == "body_too_large":  # the rest of the body is not read: no reuse
            extra["connection"] = "close"
        await start(status, _headers(extra))
        await send({"type": "http.response.body", "body": json.dumps(obj).encode()})

    def _models(self) -> dict:
        fp = self.service.model()
        data = [{"id": self.model_name, "object": "model", "created": 0, "owned_by": "gtracd",
                 **({"fingerprint": fp} if fp else {})}]
        return {"object": "list", "data": data}

    def _check_model(self, model: str) -> None:
        if model not in (self.model_name, self.service.model()):
            raise ApiError(404, f"model {model!r} is not served here; GET /v1/models lists {self.model_name!r}",
                           "invalid_request_error", "model", "model_not_found")

    async def _watched(self, receive, work) -> None:
        """Run `work` until it returns or the client disconnects (then its scope is cancelled). An ApiError
        it raises comes out as itself, not inside the nursery's exception group."""
        err: ApiError | None = None
        async with trio.open_nursery() as n:
            async def watch() -> None:
                while True:
                    msg = await receive()
                    if msg["type"] == "http.disconnect":
                        self.counters["disconnects"] += 1
                        n.cancel_scope.cancel()
                        return

            n.start_soon(watch)
            try:
                await work()
            except ApiError as e:
                err = e
            n.cancel_scope.cancel()
        if err is not None:
            raise err

    # ---------------------------------------------------------------- generation
    async def _generate(self, start, send, chat: bool, req, opts: dict) -> None:
        cid = ("chatcmpl-" if chat else "cmpl-") + os.urandom(12).hex()
        created = int(time.time())
        if not opts["stream"]:
            try:
                c = await self.service.complete(req)
            except Busy as e:
                raise ApiError(429, str(e), "rate_limit_error", None, "busy", retry=True) from None
            except GenerationFailed as e:
                raise failure(e) from None
            await self._json(start, send, 200, self._whole(cid, created, chat, c))
            return
        await self._stream(start, send, cid, created, chat, req, opts)

    def _usage(self, c: Completion) -> dict:
        return {"prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens,
                "total_tokens": c.prompt_tokens + c.completion_tokens,
                "prompt_tokens_details": {"cached_tokens": c.reused_tokens}}

    def _whole(self, cid: str, created: int, chat: bool, c: Completion) -> dict:
        if chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": c.text},
                      "finish_reason": c.finish_reason, "logprobs": None}
        else:
            choice = {"index": 0, "text": c.text, "finish_reason": c.finish_reason, "logprobs": None}
        return {"id": cid, "object": "chat.completion" if chat else "text_completion", "created": created,
                "model": self.model_name, "choices": [choice], "usage": self._usage(c), "gtracd": c.provenance}

    def _chunk(self, cid: str, created: int, chat: bool, text: str | None, finish: str | None,
               role: bool = False) -> dict:
        if chat:
            delta = {"role": "assistant", "content": ""} if role else ({"content": text} if text else {})
            choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        else:
            choice = {"index": 0, "text": text or "", "finish_reason": finish, "logprobs": None}
        return {"id": cid, "object": "chat.completion.chunk" if chat else "text_completion", "created": created,
                "model": self.model_name, "choices": [choice]}

    async def _stream(self, start, send, cid: str, created: int, chat: bool, req, opts: dict) -> None:
        """SSE: the response starts with the first token (an error before it is a plain HTTP error), then
        one chunk per piece of text, the finish, the usage if asked, [DONE]. A chain failure after the
        first token is an error chunk, then [DONE]."""
        out_send, out = trio.open_memory_channel(math.inf)  # bounded by max_tokens pieces

        async def produce() -> None:
            async with out_send:
                try:
                    c = await self.service.complete(req, lambda t: out_send.send_nowait(("text", t)))
                    out_send.send_nowait(("done", c))
                except Busy as e:
                    out_send.send_nowait(("error", ApiError(429, str(e), "rate_limit_error", None, "busy",
                                                            retry=True)))
                except GenerationFailed as e:
                    out_send.send_nowait(("error", failure(e)))

        async def event(obj) -> None:
            data = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
            await send({"type": "http.response.body", "body": b"data: " + data + b"\n\n", "more_body": True})

        err: ApiError | None = None
        async with trio.open_nursery() as n:
            n.start_soon(produce)
            opened = False
            async for kind, item in out:
                if kind == "error" and not opened:
                    err = item  # nothing sent yet: a plain HTTP error (raised outside the nursery)
                    break
                if not opened:
                    opened = True
                    await start(200, [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"),
                                      (b"x-accel-buffering", b"no")])
                    if chat:
                        await event(self._chunk(cid, created, chat, None, None, role=True))
                if kind == "text" and item:
                    await event(self._chunk(cid, created, chat, item, None))
                elif kind == "error":
                    await event(item.body())
                elif kind == "done":  # the finish carries the provenance (the `gtracd` extension field)
                    await event({**self._chunk(cid, created, chat, None, item.finish_reason),
                                 "gtracd": item.provenance})
                    if opts["include_usage"]:
                        await event({"id": cid, "object": "chat.completion.chunk" if chat else "text_completion",
                                     "created": created, "model": self.model_name, "choices": [],
                                     "usage": self._usage(item)})
            if err is None:
                await event(b"[DONE]")
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            n.cancel_scope.cancel()
        if err is not None:
            raise err
