"""A fake OpenAI-compatible chat server over real HTTP, for tests of ``OpenAiCompatibleLlm``.

It speaks the wire protocol the real servers speak: ``POST /v1/chat/completions`` answered as one
``chat.completion`` JSON or, with ``"stream": true``, as Server-Sent Events over HTTP/1.1 chunked
transfer: ``data: {chat.completion.chunk}`` lines, a last chunk with ``finish_reason``, a usage
chunk (``choices: []``) when ``stream_options.include_usage`` is set, then ``data: [DONE]``.
Errors use the OpenAI shape ``{"error": {"message", "type", "param", "code"}}``.

Tests script it: canned replies (a queue, a default, or a function of the request body),
failures for the next N requests (429 with ``Retry-After``, 500...), a wrong-key 401 when
``api_key`` is set, and slowness (before the headers, between chunks) to exercise timeouts.
Every request is recorded (``requests``) for assertions on the body and headers.
"""
from __future__ import annotations

import json
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

_ERROR_TYPES = {400: ("invalid_request_error", None), 401: ("invalid_request_error", "invalid_api_key"),
                404: ("invalid_request_error", "model_not_found"),
                429: ("requests", "rate_limit_exceeded"), 500: ("server_error", None),
                503: ("server_error", None)}


@dataclass
class Recorded:
    """One request as the server saw it."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class _Failure:
    status: int
    message: str
    retry_after: float | None = None


@dataclass
class FakeOpenAI:
    """The server; start with ``with FakeOpenAI() as fake:`` and point clients at ``fake.base_url``."""

    api_key: str | None = None
    model: str = "fake-model"
    default_reply: str = "Здравствуйте! Чем могу помочь?"
    reply_fn: Callable[[dict[str, Any]], str] | None = None
    delay_before_headers_s: float = 0.0
    chunk_delay_s: float = 0.0
    stall_after_chunks: int | None = None   # stop sending (without closing) after N content chunks
    stall_s: float = 0.0
    requests: list[Recorded] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._replies: deque[str] = deque()
        self._failures: deque[_Failure] = deque()
        self._lock = threading.Lock()
        self._last_prompt: list[str] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- scripting ------------------------------------------------------------------------------

    def reply(self, *texts: str) -> "FakeOpenAI":
        """Queue replies for the next requests (then ``reply_fn`` or ``default_reply``)."""
        with self._lock:
            self._replies.extend(texts)
        return self

    def fail_next(self, status: int, times: int = 1, message: str | None = None,
                  retry_after: float | None = None) -> "FakeOpenAI":
        """The next ``times`` requests get ``status`` with an OpenAI error body."""
        text = message or {429: "Rate limit reached for requests", 500: "The server had an error while "
                           "processing your request."}.get(status, f"HTTP {status}")
        with self._lock:
            self._failures.extend(_Failure(status, text, retry_after) for _ in range(times))
        return self

    @property
    def base_url(self) -> str:
        assert self._server is not None, "server not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # ---- lifecycle ------------------------------------------------------------------------------

    def start(self) -> "FakeOpenAI":
        fake = self

        class Handler(_Handler):
            server_fake = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-openai", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "FakeOpenAI":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- behaviour ------------------------------------------------------------------------------

    def _next_failure(self) -> _Failure | None:
        with self._lock:
            return self._failures.popleft() if self._failures else None

    def _next_reply(self, body: dict[str, Any]) -> str:
        with self._lock:
            if self._replies:
                return self._replies.popleft()
        if self.reply_fn is not None:
            return self.reply_fn(body)
        return self.default_reply

    def _prompt_usage(self, messages: list[dict[str, Any]]) -> tuple[int, int]:
        """Prompt tokens (words) and how many of them a prefix cache would hold from the last call."""
        words = [w for m in messages for w in (f"<{m.get('role')}>", *str(m.get("content", "")).split())]
        with self._lock:
            cached = 0
            for a, b in zip(self._last_prompt, words):
                if a != b:
                    break
                cached += 1
            self._last_prompt = words
        return len(words), cached


def _pieces(text: str) -> list[str]:
    """Token-like pieces: each word with its leading space, as BPE models stream them."""
    out: list[str] = []
    for i, word in enumerate(text.split(" ")):
        out.append(word if i == 0 else " " + word)
    return [p for p in out if p]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_fake: FakeOpenAI

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet test output
        pass

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/v1/models":
            self._json(200, {"object": "list", "data": [{"id": self.server_fake.model, "object": "model",
                                                         "created": 0, "owned_by": "fake"}]})
        else:
            self._error(404, f"Unknown path {self.path}", code="unknown_url")

    def do_POST(self) -> None:
        fake = self.server_fake
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = None
        fake.requests.append(Recorded(self.path, {k: v for k, v in self.headers.items()},
                                      body if isinstance(body, dict) else {}))
        if fake.delay_before_headers_s:
            time.sleep(fake.delay_before_headers_s)
        if self.path != "/v1/chat/completions":
            return self._error(404, f"Unknown path {self.path}", code="unknown_url")
        if fake.api_key is not None and self.headers.get("Authorization") != f"Bearer {fake.api_key}":
            given = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
            shown = (given[:3] + "*" * 6 + given[-4:]) if given else "(none)"
            return self._error(401, f"Incorrect API key provided: {shown}. You can find your API key "
                                    "at your provider's dashboard.")
        failure = fake._next_failure()
        if failure is not None:
            headers = {"Retry-After": f"{failure.retry_after:g}"} if failure.retry_after is not None else {}
            return self._error(failure.status, failure.message, headers=headers)
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body["messages"]:
            return self._error(400, "'messages' is a required property", param="messages")
        if not body.get("model"):
            return self._error(400, "you must provide a model parameter", param="model")
        for m in body["messages"]:
            if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant", "tool",
                                                                  "developer") or "content" not in m:
                return self._error(400, f"Invalid message: {json.dumps(m, ensure_ascii=False)[:100]}",
                                   param="messages")

        text = fake._next_reply(body)
        pieces = _pieces(text)
        finish = "stop"
        max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
        if isinstance(max_tokens, int) and len(pieces) > max_tokens:
            pieces, finish = pieces[:max_tokens], "length"
        for stop in body.get("stop") or []:
            joined = "".join(pieces)
            if stop and stop in joined:
                pieces, finish = _pieces(joined[:joined.index(stop)]), "stop"
        prompt_tokens, cached = fake._prompt_usage(body["messages"])
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(pieces),
                 "total_tokens": prompt_tokens + len(pieces),
                 "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
                 "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                               "accepted_prediction_tokens": 0,
                                               "rejected_prediction_tokens": 0}}
        ident = "chatcmpl-" + uuid.uuid4().hex[:24]
        created = int(time.time())
        model = body["model"]
        if not body.get("stream"):
            return self._json(200, {
                "id": ident, "object": "chat.completion", "created": created, "model": model,
                "system_fingerprint": "fp_fake",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(pieces),
                                                     "refusal": None},
                             "logprobs": None, "finish_reason": finish}],
                "usage": usage})
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def chunk(delta: dict[str, Any], finish_reason: str | None) -> dict[str, Any]:
            out = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model,
                   "system_fingerprint": "fp_fake",
                   "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]}
            if include_usage:
                out["usage"] = None
            return out

        try:
            self._event(chunk({"role": "assistant", "content": "", "refusal": None}, None))
            for i, piece in enumerate(pieces):
                if fake.stall_after_chunks is not None and i == fake.stall_after_chunks:
                    time.sleep(fake.stall_s)
                elif fake.chunk_delay_s:
                    time.sleep(fake.chunk_delay_s)
                self._event(chunk({"content": piece}, None))
            self._event(chunk({}, finish))
            if include_usage:
                self._event({"id": ident, "object": "chat.completion.chunk", "created": created, "model": model,
                             "system_fingerprint": "fp_fake", "choices": [], "usage": usage})
            self._write_chunk(b"data: [DONE]\n\n")
            self._write_chunk(b"")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (timeout test): nothing to clean up

    # ---- wire helpers ---------------------------------------------------------------------------

    def _event(self, payload: dict[str, Any]) -> None:
        self._write_chunk(b"data: " + json.dumps(payload, ensure_ascii=False).encode("utf-8") + b"\n\n")

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode("ascii") + data + b"\r\n")
        self.wfile.flush()

    def _json(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _error(self, status: int, message: str, code: str | None = None, param: str | None = None,
               headers: dict[str, str] | None = None) -> None:
        kind, default_code = _ERROR_TYPES.get(status, ("server_error" if status >= 500 else
                                                       "invalid_request_error", None))
        self._json(status, {"error": {"message": message, "type": kind, "param": param,
                                      "code": code or default_code}}, headers)
