"""LLM over the OpenAI-compatible chat API: llama.cpp server, vLLM, Ollama or a cloud endpoint.

One POST to ``{base_url}/v1/chat/completions`` with ``stream: true``; the answer is Server-Sent
Events (``data: {chunk}`` lines, then ``data: [DONE]``). Failures before the first byte of the
stream (429, 5xx, refused connections) are retried with exponential backoff; once text has
reached the caller nothing is retried (the caller may already be speaking it). Errors map to
``EngineError`` codes: ``timeout``, ``auth``, ``rate_limited``, ``failed``.

Prompt caching is the server's job here: llama.cpp server reuses the longest common prefix of the
previous prompt per slot (``cache_prompt``), vLLM with ``--enable-prefix-caching``, cloud APIs by
themselves. Cached counts are read from ``usage.prompt_tokens_details.cached_tokens`` (OpenAI,
vLLM) or ``timings.cache_n`` (llama.cpp server) when the server reports them.
"""
from __future__ import annotations

import json
import threading
import time
from typing import Any, Iterator, Mapping

import requests
import urllib3.exceptions

from core.engines.base import EngineError, LlmChunk, LlmEngine, LlmRequest

_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_MAX_RETRY_AFTER_S = 10.0


class OpenAiCompatibleLlm(LlmEngine):
    """Streaming chat completions over HTTP with retries and timeouts.

    ``read_timeout_s`` bounds every wait for bytes (first token included); ``total_timeout_s``
    bounds a whole completion. ``extra_body`` is merged into each request body for server
    specific knobs (``{"cache_prompt": true}`` for llama.cpp server, ``{"keep_alive": "1h"}``
    for Ollama...).
    """

    name = "openai"

    def __init__(self, base_url: str, model: str, api_key: str | None = None, *,
                 connect_timeout_s: float = 3.0, read_timeout_s: float = 30.0,
                 total_timeout_s: float | None = None, max_retries: int = 2, backoff_s: float = 0.5,
                 include_usage: bool = True, extra_body: Mapping[str, Any] | None = None,
                 extra_headers: Mapping[str, str] | None = None,
                 session: requests.Session | None = None, name: str | None = None) -> None:
        base = base_url.rstrip("/")
        self.url = f"{base}/chat/completions" if base.endswith("/v1") else f"{base}/v1/chat/completions"
        self.model = model
        self.api_key = api_key
        self.timeout = (connect_timeout_s, read_timeout_s)
        self.total_timeout_s = total_timeout_s
        self.max_retries = max(0, max_retries)
        self.backoff_s = backoff_s
        self.include_usage = include_usage
        self.extra_body = dict(extra_body or {})
        self.extra_headers = dict(extra_headers or {})
        self._session = session
        self._local = threading.local()
        if name:
            self.name = name

    @property
    def session(self) -> requests.Session:
        """One HTTP session per thread: pooled connections must not move between pool threads
        (under gevent a socket belongs to the hub of the thread that opened it)."""
        if self._session is not None:
            return self._session
        sess = getattr(self._local, "session", None)
        if sess is None:
            sess = self._local.session = requests.Session()
        return sess

    def build_body(self, request: LlmRequest) -> dict[str, Any]:
        """The JSON body sent for ``request`` (public so tests and logs can show it)."""
        messages = []
        for m in request.messages:
            item: dict[str, Any] = {"role": m.role, "content": m.content}
            if m.name:
                item["name"] = m.name
            messages.append(item)
        body: dict[str, Any] = {"model": self.model, "messages": messages, "stream": True,
                                "max_tokens": request.max_tokens, "temperature": request.temperature}
        if self.include_usage:
            body["stream_options"] = {"include_usage": True}
        if request.stop:
            body["stop"] = list(request.stop)
        if request.json_schema is not None:
            name = str(request.json_schema.get("title") or "response")
            body["response_format"] = {"type": "json_schema", "json_schema": {
                "name": "".join(c if c.isalnum() or c in "_-" else "_" for c in name)[:64],
                "schema": request.json_schema, "strict": True}}
        body.update(self.extra_body)
        return body

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream", **self.extra_headers}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def _complete(self, request: LlmRequest) -> Iterator[LlmChunk]:
        started = time.monotonic()
        response = self._open(self.build_body(request), started)
        try:
            yield from self._read_stream(response, started)
        finally:
            response.close()

    def _open(self, body: dict[str, Any], started: float) -> requests.Response:
        """POST with retries; returns a 200 response whose body is not read yet."""
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        attempt = 0
        while True:
            delay = self.backoff_s * (2 ** attempt)
            try:
                response = self.session.post(self.url, data=data, headers=self._headers(),
                                             timeout=self.timeout, stream=True)
            except requests.exceptions.ConnectTimeout as exc:
                error = EngineError(self.name, "timeout", f"connect to {self.url}: {exc}")
            except requests.exceptions.Timeout as exc:
                # The server accepted the request and is silent: retrying would double the wait.
                raise EngineError(self.name, "timeout", f"no response from {self.url} in "
                                  f"{self.timeout[1]} s") from exc
            except requests.exceptions.ConnectionError as exc:
                error = EngineError(self.name, "failed", f"connect to {self.url}: {exc}")
            except requests.exceptions.RequestException as exc:
                raise EngineError(self.name, "failed", str(exc)) from exc
            else:
                if response.status_code == 200:
                    return response
                error = self._status_error(response)
                if response.status_code in _RETRY_STATUSES:
                    retry_after = _retry_after(response)
                    if retry_after is not None:
                        delay = max(delay, min(retry_after, _MAX_RETRY_AFTER_S))
                response.close()
                if response.status_code not in _RETRY_STATUSES:
                    raise error
            if attempt >= self.max_retries:
                raise error
            if self.total_timeout_s is not None and time.monotonic() - started + delay > self.total_timeout_s:
                raise error
            time.sleep(delay)
            attempt += 1

    def _status_error(self, response: requests.Response) -> EngineError:
        status = response.status_code
        try:
            payload = response.json()
            err = payload.get("error", payload) if isinstance(payload, dict) else {}
            message = err.get("message") if isinstance(err, dict) else str(err)
        except ValueError:
            message = None
        message = f"HTTP {status}: {message or response.text[:300] or response.reason}"
        if status in (401, 403):
            return EngineError(self.name, "auth", message)
        if status == 429:
            return EngineError(self.name, "rate_limited", message)
        if status in (408, 504):
            return EngineError(self.name, "timeout", message)
        return EngineError(self.name, "failed", message)

    def _read_stream(self, response: requests.Response, started: float) -> Iterator[LlmChunk]:
        finish: str | None = None
        usage: dict[str, Any] = {}
        cache_n = 0
        content_type = response.headers.get("Content-Type", "")
        try:
            if "text/event-stream" not in content_type:
                # A server that ignored ``stream: true`` answers with one JSON completion.
                payload = json.loads(response.content or b"{}")
                choice = (payload.get("choices") or [{}])[0]
                text = (choice.get("message") or {}).get("content") or ""
                if text:
                    yield LlmChunk(text)
                yield self._final(choice.get("finish_reason"), payload.get("usage") or {}, 0)
                return
            for line in _sse_lines(response):
                if self.total_timeout_s is not None and time.monotonic() - started > self.total_timeout_s:
                    raise EngineError(self.name, "timeout", f"completion took over {self.total_timeout_s} s")
                if not line.startswith("data:"):
                    continue  # comments (": keep-alive"), event:/id: fields
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                try:
                    chunk = json.loads(data)
                except ValueError as exc:
                    raise EngineError(self.name, "failed", f"bad SSE data: {data[:200]}") from exc
                if "error" in chunk:  # some servers report mid-stream errors as an event
                    err = chunk["error"]
                    message = err.get("message") if isinstance(err, dict) else err
                    raise EngineError(self.name, "failed", f"error in stream: {message}")
                if chunk.get("usage"):
                    usage = chunk["usage"]
                timings = chunk.get("timings")
                if isinstance(timings, dict) and timings.get("cache_n"):
                    cache_n = int(timings["cache_n"])
                for choice in chunk.get("choices") or []:
                    text = (choice.get("delta") or {}).get("content")
                    if text:
                        yield LlmChunk(text)
                    if choice.get("finish_reason"):
                        finish = choice["finish_reason"]
        except (requests.exceptions.Timeout, urllib3.exceptions.TimeoutError, TimeoutError) as exc:
            raise EngineError(self.name, "timeout", f"stream stalled for {self.timeout[1]} s") from exc
        except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise EngineError(self.name, "failed", f"stream broken: {exc}") from exc
        if finish is None:
            raise EngineError(self.name, "failed", "stream ended without finish_reason")
        yield self._final(finish, usage, cache_n)

    @staticmethod
    def _final(finish: str | None, usage: Mapping[str, Any], cache_n: int) -> LlmChunk:
        details = usage.get("prompt_tokens_details") or {}
        cached = int(details.get("cached_tokens") or 0) or cache_n
        # tool_calls/function_call end a turn like stop; a filtered answer is not to be spoken.
        reason = finish if finish in ("stop", "length") else "error" if finish == "content_filter" else "stop"
        return LlmChunk("", finish_reason=reason, prompt_tokens=int(usage.get("prompt_tokens") or 0),
                        completion_tokens=int(usage.get("completion_tokens") or 0), cached_tokens=cached)


def _sse_lines(response: requests.Response) -> Iterator[str]:
    """SSE lines as they arrive. ``read1`` returns what the socket has instead of waiting for a
    full buffer, so each token reaches the caller at once (chunked or close-delimited bodies)."""
    raw = response.raw
    buffer = b""
    while True:
        data = raw.read1(65536)
        if not data:
            break
        buffer += data
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            yield line.rstrip(b"\r").decode("utf-8", errors="replace")
    if buffer.strip():
        yield buffer.rstrip(b"\r").decode("utf-8", errors="replace")


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
