"""Local LLM on CPU through llama-cpp-python (GGUF models such as Qwen2.5 Instruct Q4_K_M).

Prompt processing dominates latency on CPU (tens of milliseconds a token for a 0.5B model on two
cores: a 600-token system prompt costs seconds), so the static part of the prompt (persona, rules,
tools, knowledge: ``messages[:cache_prefix]``) must be evaluated once, not every turn.
llama-cpp-python keeps the KV cache of the last sequence it evaluated and, on the next call,
evaluates only the tokens after the longest common prefix.
This module makes sure nothing defeats that:

* one ``Llama`` object per model file and process (module-level cache), shared by every engine
  instance and call that uses the model, so the state survives between turns;
* calls on one model are serialized by a lock (a ``Llama`` is single-sequence and not
  thread-safe); the stream holds the lock until it ends or is closed;
* the chat template comes from the model and renders the static messages identically every
  turn, so their tokens are identical and land in the common prefix;
* with ``ram_cache_mb`` the states of recent sequences are also kept in RAM
  (``LlamaRAMCache``): when calls of different agents interleave, each gets its own prefix back
  instead of re-evaluating it.

The final chunk reports ``prompt_tokens`` and ``cached_tokens`` (the prompt tokens reused from the
KV cache), measured at the model's ``eval`` (should a llama-cpp-python release stop calling it,
the counts read 0 and nothing else changes). Error codes beyond the base's: ``context_overflow``
(prompt plus ``max_tokens`` exceed ``n_ctx``: trim the history), ``bad_schema`` (the JSON schema
cannot be turned into a grammar), ``timeout`` (the model stayed busy for ``lock_timeout_s``).
"""
from __future__ import annotations

import json
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

from core.engines.base import EngineError, EngineUnavailable, LlmChunk, LlmEngine, LlmRequest

BUILD_HINT = ('pip install llama-cpp-python (no wheel for CPython 3.11: the sdist compiles in about '
              '6 minutes; CMAKE_BUILD_PARALLEL_LEVEL=2 CMAKE_ARGS="-DGGML_NATIVE=OFF" pip install '
              'llama-cpp-python)')


class _EvalProbe:
    """Wraps ``Llama.eval`` to see how much of a prompt was served from the KV cache.

    llama-cpp-python evaluates a prompt as one ``eval(remaining_tokens)`` after moving
    ``n_tokens`` back to the reused prefix, then one ``eval([token])`` per generated token; the
    first call of a completion therefore tells both the cached and the total prompt length.
    """

    def __init__(self, llama: Any) -> None:
        self.llama = llama
        self.original = llama.eval
        self.reset()
        llama.eval = self  # instance attribute shadows the method for generate()'s self.eval

    def reset(self) -> None:
        self.cached: int | None = None
        self.prompt = 0
        self.prompt_eval_s = 0.0
        self.fed_back = 0

    def __call__(self, tokens: Sequence[int]) -> None:
        if self.cached is None:
            self.cached = int(self.llama.n_tokens)
            self.prompt = self.cached + len(tokens)
            started = time.perf_counter()
            self.original(tokens)
            self.prompt_eval_s = time.perf_counter() - started
            return
        self.fed_back += len(tokens)
        self.original(tokens)


@dataclass
class _Loaded:
    llama: Any
    probe: _EvalProbe
    lock: threading.Lock = field(default_factory=threading.Lock)
    grammars: OrderedDict[str, Any] = field(default_factory=OrderedDict)


_MODELS: dict[tuple[str, int, int], _Loaded] = {}
_MODELS_LOCK = threading.Lock()


def _import_llama_cpp() -> Any:
    try:
        import llama_cpp
    except ImportError as exc:
        raise EngineUnavailable("llama_cpp", f"llama-cpp-python is not installed ({exc})", BUILD_HINT) from exc
    return llama_cpp


def unload_all() -> None:
    """Forget loaded models (tests, or freeing memory when an agent's model changes)."""
    with _MODELS_LOCK:
        for loaded in _MODELS.values():
            with loaded.lock:
                loaded.llama.close()
        _MODELS.clear()


@dataclass
class LlamaStats:
    """What the last completion cost (for logs and benchmarks)."""

    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    prompt_eval_s: float = 0.0
    total_s: float = 0.0


class LlamaCppLlm(LlmEngine):
    """A GGUF chat model on CPU with prefix caching and JSON-schema-constrained output.

    Instances with the same ``model_path``, ``n_ctx`` and ``n_threads`` share one loaded model.
    ``sampling`` adds llama-cpp-python sampling options (``top_p``, ``repeat_penalty``...).
    ``seed`` makes sampling reproducible (same prompt, same answer); None draws one per call.
    The model loads in the constructor (``preload=False`` defers it to ``load()`` or the first call).
    """

    name = "llama_cpp"

    def __init__(self, model_path: str, n_ctx: int = 4096, n_threads: int | None = None, *,
                 n_batch: int = 512, ram_cache_mb: int = 0, seed: int | None = None,
                 lock_timeout_s: float = 60.0, sampling: dict[str, Any] | None = None,
                 preload: bool = True, name: str | None = None) -> None:
        self.llama_cpp = _import_llama_cpp()
        if not os.path.isfile(model_path):
            raise EngineUnavailable(self.name, f"model file not found: {model_path}",
                                    "voiceai models install, or set the agent's model path")
        self.model_path = os.path.realpath(model_path)
        self.n_ctx = n_ctx
        self.n_threads = n_threads or os.cpu_count() or 1
        self.n_batch = n_batch
        self.ram_cache_mb = ram_cache_mb
        self.seed = seed
        self.lock_timeout_s = lock_timeout_s
        self.sampling = dict(sampling or {})
        self.last_stats = LlamaStats()
        if name:
            self.name = name
        if preload:  # a broken file fails here, where the factory can still fall back
            self._loaded()

    # ---- loading --------------------------------------------------------------------------------

    def load(self) -> Any:
        """The shared ``Llama`` for this model, loading it on first use (call early to warm up)."""
        return self._loaded().llama

    def _loaded(self) -> _Loaded:
        key = (self.model_path, self.n_ctx, self.n_threads)
        with _MODELS_LOCK:
            loaded = _MODELS.get(key)
            if loaded is None:
                try:
                    llama = self.llama_cpp.Llama(
                        model_path=self.model_path, n_ctx=self.n_ctx, n_batch=self.n_batch,
                        n_threads=self.n_threads, n_threads_batch=self.n_threads, verbose=False)
                except Exception as exc:  # noqa: BLE001 - a bad file or too little memory
                    raise EngineUnavailable(self.name, f"cannot load {self.model_path}: {exc}",
                                            "check the GGUF file (size, checksum) and free memory") from exc
                if self.ram_cache_mb > 0:
                    llama.set_cache(self.llama_cpp.LlamaRAMCache(capacity_bytes=self.ram_cache_mb << 20))
                loaded = _MODELS[key] = _Loaded(llama, _EvalProbe(llama))
            return loaded

    def _grammar(self, loaded: _Loaded, schema: dict[str, Any]) -> Any:
        """Compiled GBNF for a schema, kept per model: converting costs milliseconds per call."""
        key = json.dumps(schema, sort_keys=True, ensure_ascii=False)
        grammar = loaded.grammars.get(key)
        if grammar is None:
            try:
                grammar = self.llama_cpp.LlamaGrammar.from_json_schema(key, verbose=False)
            except Exception as exc:  # noqa: BLE001
                raise EngineError(self.name, "bad_schema", f"cannot compile JSON schema: {exc}") from exc
            loaded.grammars[key] = grammar
            if len(loaded.grammars) > 64:
                loaded.grammars.popitem(last=False)
        else:
            loaded.grammars.move_to_end(key)
        return grammar

    # ---- completion -----------------------------------------------------------------------------

    def _complete(self, request: LlmRequest) -> Iterator[LlmChunk]:
        loaded = self._loaded()
        messages = []
        for m in request.messages:
            item: dict[str, Any] = {"role": m.role, "content": m.content}
            if m.name:
                item["name"] = m.name
            messages.append(item)
        kwargs: dict[str, Any] = {"max_tokens": request.max_tokens, "temperature": request.temperature,
                                  "stop": list(request.stop) or None, "stream": True, **self.sampling}
        if self.seed is not None:
            kwargs["seed"] = self.seed
        if request.json_schema is not None:
            kwargs["grammar"] = self._grammar(loaded, request.json_schema)

        if not loaded.lock.acquire(timeout=self.lock_timeout_s):
            raise EngineError(self.name, "timeout", f"model busy for {self.lock_timeout_s} s")
        started = time.perf_counter()
        stream = None
        finish: str | None = None
        try:
            loaded.probe.reset()
            try:
                stream = loaded.llama.create_chat_completion(messages=messages, **kwargs)
                for chunk in stream:
                    choice = (chunk.get("choices") or [{}])[0]
                    text = (choice.get("delta") or {}).get("content")
                    if text:
                        yield LlmChunk(text)
                    if choice.get("finish_reason"):
                        finish = choice["finish_reason"]
            except ValueError as exc:
                if "context window" in str(exc):
                    raise EngineError(self.name, "context_overflow", str(exc)) from exc
                raise
            probe = loaded.probe
            # Every sampled token is fed back for the next step except the last one when the
            # answer hit max_tokens or a stop string (an end-of-turn token is not counted at all).
            completion = probe.fed_back + (1 if finish == "length" else 0)
            self.last_stats = LlamaStats(prompt_tokens=probe.prompt, cached_tokens=probe.cached or 0,
                                         completion_tokens=completion, prompt_eval_s=probe.prompt_eval_s,
                                         total_s=time.perf_counter() - started)
        finally:
            if stream is not None:
                stream.close()
            loaded.lock.release()
        yield LlmChunk("", finish_reason="length" if finish == "length" else "stop",
                       prompt_tokens=self.last_stats.prompt_tokens, completion_tokens=completion,
                       cached_tokens=self.last_stats.cached_tokens)
