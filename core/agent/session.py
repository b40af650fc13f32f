"""The dialog runtime of one conversation: the same for phone calls, the browser and the playground.

``AgentSession`` is a per-call state machine over an agent version's config
(``core.agent.config``): greet -> collect (fields, one at a time) -> confirm (read-back) -> act
(the config's tool actions) -> close, with ``escalate`` reachable from every state and
``converse`` (answer questions until goodbye) when nothing is left to collect.

Understanding is deterministic first (``core.agent.parsing``, ``core.agent.intents``): escalation
triggers, the honest "I am a voice assistant" answer, yes/no and field values never depend on an
LLM. With an LLM (``llm_stream``) the session also asks it, with a JSON-schema constrained output,
for field values the parsers missed and for tool calls, and streams free answers through the
"no invented numbers" guardrail. Without one (or when it fails, per
``adaptive.fallback.on_llm_failure``) the scripted mode answers from the config's rules, facts and
the knowledge base: the fallback scenarios of spec 1.3.

The session holds no engine and no connection: it may run in a pool thread (the voice loop) or a
web request (the playground, where ``to_state``/``from_state`` keep it in Redis between turns).
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import re
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterator
from zoneinfo import ZoneInfo

from core.agent import intents
from core.agent.config import effective
from core.agent.parsing import Parsed, fold, is_no, is_yes, parse_field, parse_partial_datetime, spoken_date, \
    spoken_time
from core.agent.phrases import phrase
from core.agent.prompt import system_prompt, turn_context, unsupported_numbers
from core.engines.base import LlmChunk, LlmRequest, Message
from core.kb.retrieval import retrieve
from core.tools import registry
from core.tools.base import ToolContext

log = logging.getLogger("voiceai.agent")

LlmStream = Callable[[LlmRequest], Iterator[LlmChunk]]

GREET, COLLECT, CONFIRM, ACT, CONVERSE, CLOSE, ESCALATE = (
    "greet", "collect", "confirm", "act", "converse", "close", "escalate")
STATES = (GREET, COLLECT, CONFIRM, ACT, CONVERSE, CLOSE, ESCALATE)
SUMMARY = "__summary__"
_NO_RULE = "\x00no-rule\x00"
# Records tools return ({"contact": {"id": ...}}, {"deal": {...}}) that become CRM links in the handoff packet.
_LINK_KINDS = ("contact", "company", "deal", "task", "note", "appointment")


@dataclass
class SessionContext:
    """Who the conversation is with and where it runs (``ToolContext`` is built from it)."""

    project_id: uuid.UUID
    agent_id: uuid.UUID | None
    agent_version_id: uuid.UUID | None
    trace_id: str
    call_id: uuid.UUID | None = None
    caller_phone: str | None = None
    channel: str = "phone"              # phone | browser | playground
    sandbox: bool = False               # tools roll back their changes (playground default)
    variables: dict[str, Any] = field(default_factory=dict)  # campaign contact columns, channel variables
    timezone: str = "Europe/Moscow"
    user_id: uuid.UUID | None = None    # playground: who is testing
    now: Callable[[], dt.datetime] | None = None  # clock (tests); default: the real time
    # Runs CPU-heavy work (embedding the question) off the gevent loop: the voice loop passes its
    # inference pool's ``run``; None runs inline (the playground, tests).
    offload: Callable[..., Any] | None = None

    def current_time(self) -> dt.datetime:
        now = self.now() if self.now else dt.datetime.now(dt.timezone.utc)
        return now.astimezone(ZoneInfo(self.timezone))


@dataclass
class Escalation:
    reason: str            # caller_request | low_confidence | misunderstanding | negative_sentiment | keyword | tool_failed | llm_failed
    reason_text: str       # Russian, shown to the operator
    operator_route_id: str | None  # None: the telephony layer uses the number's operator route


@dataclass
class ToolCall:
    name: str
    args: dict[str, Any]
    ok: bool
    data: dict[str, Any]
    error_code: str | None
    error_message: str | None
    duration_ms: int
    invocation_id: str | None = None


def _sentences(chunks: Iterator[LlmChunk]) -> Iterator[str]:
    """Streamed LLM text as whole sentences, each as soon as it is complete (the guardrail checks them)."""
    from core.voice.sentences import SentenceStream
    splitter = SentenceStream()
    for chunk in chunks:
        yield from splitter.feed(chunk.text)
    yield from splitter.flush()


class LlmFailed(Exception):
    """The injected LLM failed (engine error, empty or error finish): switch to the fallback."""


class AgentSession:
    def __init__(self, config: dict[str, Any], ctx: SessionContext, llm_stream: LlmStream | None) -> None:
        self.raw_config = config
        self.cfg = effective(config)
        self.ctx = ctx
        self.llm_stream = llm_stream if self.cfg["llm"]["engine"] != "scripted" else None
        self.formality = self.cfg["adaptive"]["formality"]
        self.fields_def: list[dict[str, Any]] = self.cfg["fields"]
        self.state = GREET
        self.fields: dict[str, Any] = {}
        self.spoken: dict[str, str] = {}
        self.partial: dict[str, dict[str, str]] = {}
        self.pending_confirm: str | None = None
        self.confirmed: list[str] = []
        self.summary_confirmed = False
        self.misunderstood = 0
        self.low_conf = 0
        self.escalation: Escalation | None = None
        self.ended = False
        self.goal_reached = False
        self.results: dict[str, Any] = {}
        self.history: list[Message] = []
        self.tool_calls: list[ToolCall] = []
        self.turn_tool_calls: list[ToolCall] = []
        self.citations: list[dict[str, Any]] = []
        self.llm_failed = False
        self.events: list[dict[str, Any]] = []

    # ---- public interface -----------------------------------------------------------------------
    @property
    def mode(self) -> str:
        return "llm" if self.llm_stream is not None and not self.llm_failed else "scripted"

    def greeting(self) -> str:
        """The first words; also moves to collecting (with the first field's question) or converse."""
        text = self._fmt(self.cfg["greeting"])
        nxt = self._next_field()
        if nxt is not None:
            self.state = COLLECT
            if not text.rstrip().endswith("?"):
                text = f"{text} {self._fmt(nxt['prompt'])}".strip()
        else:
            self.state = CONVERSE
        self.history.append(Message("assistant", text))
        return text

    def respond(self, caller_text: str, *, confidence: float | None = None,
                dtmf: str | None = None) -> Iterator[str]:
        """Stream the reply to one caller turn (text pieces; tool calls happen inside)."""
        if self.ended or self.state == ESCALATE:
            return
        if self.state == GREET:
            self.greeting()
        text = " ".join((caller_text or "").split())
        if dtmf and not text:
            text = phrase("dtmf", digits=dtmf)
        if not text:
            return
        self.low_conf = 0
        self.turn_tool_calls = []
        self.citations = []
        self.history.append(Message("user", text))
        parts: list[str] = []
        try:
            for piece in self._turn(text, dtmf):
                if piece:
                    parts.append(piece)
                    yield piece
        finally:
            said = "".join(parts).strip()
            if said:
                self.history.append(Message("assistant", said))

    def note_heard(self, spoken_text: str, heard_text: str) -> None:
        """Barge-in: the last reply was cut; the history keeps only what the caller heard of it."""
        for i in range(len(self.history) - 1, -1, -1):
            msg = self.history[i]
            if msg.role != "assistant":
                continue
            idx = msg.content.find(spoken_text.strip()) if spoken_text.strip() else -1
            kept = (msg.content[:idx] + heard_text).strip() if idx >= 0 else heard_text.strip()
            if kept:
                self.history[i] = Message("assistant", kept)
            else:
                del self.history[i]
            return

    def low_confidence(self) -> str | None:
        """An STT_LOW_CONFIDENCE turn: the ask-again phrase, or None once the policy says escalate."""
        if self.ended or self.state == ESCALATE:
            return None
        self.low_conf += 1
        if self.low_conf >= int(self.cfg["escalation"]["low_confidence_turns"]):
            self._set_escalation("low_confidence", f"Система плохо слышит клиента ({self.low_conf} раза подряд)")
            return None
        again = phrase("ask_again", self.formality)
        self.history.append(Message("assistant", again))
        return again

    def escalate(self, reason: str, reason_text: str) -> None:
        """An escalation decided outside the dialog (the voice loop's low-confidence policy)."""
        self._set_escalation(reason, reason_text)

    def resume_after_failed_transfer(self) -> None:
        """Nobody took the transfer and the route sends the caller back: talk on, re-arm the policies."""
        if self.escalation is not None:
            self.events.append({"type": "agent.transfer_failed", "reason": self.escalation.reason})
        self.escalation = None
        self.misunderstood = 0
        self.low_conf = 0
        self.state = CONVERSE if self._next_field() is None else COLLECT

    def phrase_hints(self) -> list[str]:
        """Words the STT should expect now (choices, yes/no, dates), plus "оператор"."""
        hints: list[str] = []
        if self.state == CONFIRM:
            hints += ["да", "нет", "верно", "неверно"]
        f = self._current_field()
        if f is not None and self.state == COLLECT:
            if f["type"] == "choice":
                for c in f["choices"]:
                    hints += [c["label"], *(c.get("synonyms") or [])]
            elif f["type"] in ("date", "datetime"):
                hints += ["сегодня", "завтра", "послезавтра", "понедельник", "вторник", "среду", "четверг",
                          "пятницу", "субботу"]
            elif f["type"] == "phone":
                hints += ["плюс семь", "восемь", "этот номер"]
        hints.append("оператор")
        return list(dict.fromkeys(h for h in hints if h))

    def handoff_packet(self) -> dict[str, Any]:
        """What the operator gets: reason, caller, collected fields, summary, excerpt, CRM links."""
        esc = self.escalation
        hcfg = self.cfg["escalation"]["handoff"]
        name_key = next((f["key"] for f in self.fields_def if f["type"] == "name"), None)
        links = self.crm_links()
        contact = next((link["id"] for link in links if link["type"] == "contact"), None)
        packet = {
            "reason": esc.reason if esc else "policy",
            "reason_text": esc.reason_text if esc else "",
            "operator_route_id": esc.operator_route_id if esc else None,
            "caller": {"phone": self.ctx.caller_phone, "name": self.fields.get(name_key) if name_key else None,
                       "crm_contact_id": contact},
            "collected": ({f["key"]: {"label": f["label"], "value": self.fields[f["key"]]}
                           for f in self.fields_def if f["key"] in self.fields}
                          if hcfg["include_fields"] else {}),
            "summary": self.summary() if hcfg["include_summary"] else "",
            "transcript_excerpt": self.transcript_excerpt(int(hcfg["transcript_turns"])),
            "crm_links": links if hcfg["include_crm_links"] else [],
        }
        return packet

    def finish(self, outcome: str | None = None) -> dict[str, Any]:
        """Call end: outcome, summary and extracted fields; written to the call when there is one."""
        if outcome is None:
            if self.escalation is not None:
                outcome = "transferred"
            elif self.goal_reached or (self.ended and self.state == CLOSE):
                outcome = "completed"
        after = self.cfg["after_call"]
        result = {"outcome": outcome, "summary": self.summary() if after["summary"] else None,
                  "extracted": dict(self.fields) if after["extract"] else {}, "state": self.state,
                  "goal_reached": self.goal_reached,
                  "escalation": asdict(self.escalation) if self.escalation else None,
                  "tool_calls": [{"name": t.name, "ok": t.ok, "error_code": t.error_code} for t in self.tool_calls],
                  "crm_links": self.crm_links()}
        if after["crm_note"] and self.ctx.call_id is not None:
            result["crm_note"] = self._crm_note(result["summary"] or self.summary())
        if self.ctx.call_id is not None:
            self._write_call(result)
        return result

    # ---- serialisation (the playground keeps sessions in Redis) ----------------------------------
    def to_state(self) -> dict[str, Any]:
        return {"state": self.state, "fields": self.fields, "spoken": self.spoken, "partial": self.partial,
                "pending_confirm": self.pending_confirm, "confirmed": self.confirmed,
                "summary_confirmed": self.summary_confirmed, "misunderstood": self.misunderstood,
                "low_conf": self.low_conf, "escalation": asdict(self.escalation) if self.escalation else None,
                "ended": self.ended, "goal_reached": self.goal_reached, "results": self.results,
                "history": [{"role": m.role, "content": m.content, "name": m.name} for m in self.history],
                "tool_calls": [asdict(t) for t in self.tool_calls], "llm_failed": self.llm_failed}

    @classmethod
    def from_state(cls, config: dict[str, Any], ctx: SessionContext, llm_stream: LlmStream | None,
                   state: dict[str, Any]) -> "AgentSession":
        s = cls(config, ctx, llm_stream)
        for key in ("state", "fields", "spoken", "partial", "pending_confirm", "confirmed", "summary_confirmed",
                    "misunderstood", "low_conf", "ended", "goal_reached", "results", "llm_failed"):
            setattr(s, key, state[key])
        s.escalation = Escalation(**state["escalation"]) if state.get("escalation") else None
        s.history = [Message(m["role"], m["content"], m.get("name")) for m in state["history"]]
        s.tool_calls = [ToolCall(**t) for t in state["tool_calls"]]
        return s

    # ---- derived views ---------------------------------------------------------------------------
    def summary(self) -> str:
        """A short deterministic summary: goal, collected fields, result, escalation."""
        parts = []
        if self.cfg["goal"]:
            parts.append(f"Цель: {self.cfg['goal'].rstrip('.')}.")
        collected = [f"{f['label']} — {self.spoken.get(f['key'], self.fields[f['key']])}"
                     for f in self.fields_def if f["key"] in self.fields]
        if collected:
            parts.append("Собрано: " + "; ".join(collected) + ".")
        done = [t.name for t in self.tool_calls if t.ok]
        failed = [t.name for t in self.tool_calls if not t.ok]
        if done:
            parts.append("Выполнено: " + ", ".join(done) + ".")
        if failed:
            parts.append("Не удалось: " + ", ".join(failed) + ".")
        if self.escalation:
            parts.append(f"Перевод на оператора: {self.escalation.reason_text}.")
        elif self.goal_reached:
            parts.append("Цель достигнута.")
        elif not collected:
            asked = [m.content for m in self.history if m.role == "user"]
            if asked:
                parts.append("Клиент: " + asked[-1][:200])
        return " ".join(parts)

    def transcript_excerpt(self, turns: int = 6) -> str:
        who = {"user": "Клиент", "assistant": "Агент"}
        lines = [f"{who[m.role]}: {m.content}" for m in self.history if m.role in who]
        return "\n".join(lines[-turns:]) if turns else ""

    def crm_links(self) -> list[dict[str, Any]]:
        links: list[dict[str, Any]] = []
        seen: set[str] = set()
        for call in self.tool_calls:
            if not call.ok:
                continue
            for kind in _LINK_KINDS:
                record = call.data.get(kind)
                value = record.get("id") if isinstance(record, dict) else call.data.get(f"{kind}_id")
                if value and str(value) not in seen:
                    seen.add(str(value))
                    links.append({"type": kind, "id": str(value), "tool": call.name})
        return links

    # ---- the turn --------------------------------------------------------------------------------
    def _turn(self, text: str, dtmf: str | None) -> Iterator[str]:
        esc = self.cfg["escalation"]
        if esc["on_human_request"] and intents.wants_human(text):
            yield from self._escalate("caller_request", "Клиент попросил соединить с оператором")
            return
        found = intents.negative(text, esc["keywords"])
        if found is not None:
            own = any(fold(k) == fold(found) for k in esc["keywords"])
            if own or esc["on_negative_sentiment"]:
                reason = "keyword" if own else "negative_sentiment"
                yield from self._escalate(reason, f"Недовольство клиента: «{found}»")
                return
        if intents.asks_robot(text):
            company = f" {self.cfg['company']}" if self.cfg["company"] else ""
            yield phrase("robot", self.formality, company=company)
            yield from self._reask()
            return
        if intents.says_bye(text) and self.state != CONFIRM:
            yield from self._close()
            return
        if self.state == CONFIRM:
            yield from self._confirm_turn(text, dtmf)
        elif self.state == COLLECT:
            yield from self._collect_turn(text, dtmf)
        else:
            yield from self._converse_turn(text)

    def _collect_turn(self, text: str, dtmf: str | None) -> Iterator[str]:
        f = self._current_field()
        if f is None:
            yield from self._advance()
            return
        if intents.asks_info(text) and not dtmf:
            # "сколько стоит приём стоматолога?" names a choice but is a question: answer, ask again
            yield from self._answer(text, then=self._fmt(f["prompt"]))
            return
        parsed = self._parse(f, text, dtmf)
        if parsed is None and f["type"] == "datetime":
            have = parse_partial_datetime(f, text, self._today(), self.partial.get(f["key"], {}))
            if have != self.partial.get(f["key"], {}):
                self.partial[f["key"]] = have
                if "date" in have and "time" in have:
                    parsed = parse_field(f, f"{have['date']} {have['time']}", today=self._today())
                else:
                    self.misunderstood = 0
                    if "date" in have:
                        d = dt.date.fromisoformat(have["date"])
                        yield f"Хорошо, {spoken_date(d)}. На какое время? "
                    else:
                        t = dt.time.fromisoformat(have["time"])
                        yield f"Хорошо, в {spoken_time(t)}. На какой день? "
                    return
        if parsed is None and self.mode == "llm" and not intents.is_question(text):
            parsed = self._llm_extract(f, text)
        if parsed is None:
            if intents.is_question(text):
                yield from self._answer(text, then=self._fmt(f["prompt"]))
                return
            yield from self._not_understood(self._fmt(f["prompt"]) + self._choices_hint(f))
            return
        self._store(f, parsed)
        self._opportunistic(text, exclude=f["key"])
        if f.get("confirm"):
            self.state, self.pending_confirm = CONFIRM, f["key"]
            yield phrase("confirm_value", self.formality, label=f["label"], value=parsed.spoken) + " "
            return
        yield from self._advance()

    def _confirm_turn(self, text: str, dtmf: str | None) -> Iterator[str]:
        key = self.pending_confirm
        if is_yes(text) or dtmf == "1":
            if key == SUMMARY:
                self.summary_confirmed = True
            elif key:
                self.confirmed.append(key)
            self.pending_confirm = None
            self.misunderstood = 0
            yield from self._advance()
            return
        if key and key != SUMMARY:
            f = self._field(key)
            parsed = self._parse(f, text, None) if f else None
            if parsed is not None and parsed.value != self.fields.get(key):
                self._store(f, parsed)
                yield phrase("confirm_value", self.formality, label=f["label"], value=parsed.spoken) + " "
                return
            if is_no(text) or dtmf == "2":
                self.fields.pop(key, None)
                self.spoken.pop(key, None)
                self.partial.pop(key, None)
                self.state, self.pending_confirm = COLLECT, None
                yield phrase("which_wrong", self.formality, prompt=self._fmt(f["prompt"])) + " "
                return
        elif key == SUMMARY:
            target = self._mentioned_field(text)
            if target is not None:
                parsed = self._parse(target, text, None)
                if parsed is not None:
                    self._store(target, parsed)
                    yield self._summary_question()
                    return
                self.fields.pop(target["key"], None)
                self.spoken.pop(target["key"], None)
                self.partial.pop(target["key"], None)
                self.state, self.pending_confirm = COLLECT, None
                yield phrase("which_wrong", self.formality, prompt=self._fmt(target["prompt"])) + " "
                return
            if is_no(text) or dtmf == "2":
                yield "Что именно нужно исправить? "
                return
        if intents.is_question(text):
            yield from self._answer(text, then=self._confirm_question())
            return
        yield from self._not_understood(self._confirm_question())

    def _converse_turn(self, text: str) -> Iterator[str]:
        if self.mode == "llm":
            yield from self._llm_turn(text, instruction="Ответь клиенту.")
            return
        answer = self._scripted_answer(text)
        if answer is not None:
            self.misunderstood = 0
            yield answer
            return
        default = self._fmt(self.cfg["llm"]["default_reply"])
        if default:
            yield default
            return
        yield from self._not_understood(phrase("anything_else", self.formality))

    # ---- steps -----------------------------------------------------------------------------------
    def _advance(self) -> Iterator[str]:
        """Ask the next field, the summary read-back, or run the actions."""
        nxt = self._next_field()
        if nxt is not None:
            self.state = COLLECT
            yield self._fmt(nxt["prompt"]) + " "
            return
        if self.cfg["confirm_summary"] and self.fields and not self.summary_confirmed:
            self.state, self.pending_confirm = CONFIRM, SUMMARY
            yield self._summary_question()
            return
        if self.fields_def or self.cfg["actions"]:
            yield from self._act()
            return
        self.state = CONVERSE
        yield phrase("anything_else", self.formality) + " "

    def _act(self) -> Iterator[str]:
        self.state = ACT
        said: list[str] = []
        for action in self.cfg["actions"]:
            when = action.get("when")
            if when:
                value = self.fields.get(when["field"])
                if "equals" in when and value != when["equals"]:
                    continue
                if "in" in when and value not in when["in"]:
                    continue
            args = _render_args(action.get("args") or {}, self._scope())
            call = self._invoke(action["tool"], args)
            if call.ok:
                if action.get("save_as"):
                    self.results[action["save_as"]] = call.data
                if action.get("say"):
                    said.append(self._fmt(action["say"]))
                continue
            retry = self._field(action.get("retry_field") or "")
            if retry is not None and call.error_code in ("CONFLICT", "VALIDATION_FAILED") and call.error_message:
                yield from self._retry_field(retry, call)
                return
            policy = action.get("on_failure") or ("escalate" if self.cfg["escalation"]["on_tool_failure"]
                                                  else "apologize")
            if policy == "continue":
                continue
            if said:
                yield " ".join(said) + " "
            if policy == "escalate":
                yield phrase("tool_failed", self.formality) + " "
                yield from self._escalate("tool_failed", f"Не сработал инструмент {call.name}: "
                                                         f"{call.error_message or call.error_code or 'ошибка'}")
                return
            yield phrase("tool_failed_close", self.formality) + " "
            self.state, self.ended = CLOSE, True
            return
        self.goal_reached = True
        if said:
            yield " ".join(said) + " "
        yield from self._close()

    def _retry_field(self, f: dict[str, Any], call: ToolCall) -> Iterator[str]:
        """A tool refused the value (slot taken): say why, offer its alternatives, ask the field again."""
        for key in (f["key"],):
            self.fields.pop(key, None)
            self.spoken.pop(key, None)
            self.partial.pop(key, None)
        self.summary_confirmed = False
        self.state = COLLECT
        text = call.error_message.rstrip(".") + "."
        labels = [a.get("label") for a in call.data.get("alternatives") or [] if isinstance(a, dict) and a.get("label")]
        if labels:
            text += " Свободно: " + "; ".join(labels[:3]) + "."
        yield text + " " + self._fmt(f["prompt"]) + " "

    def _close(self) -> Iterator[str]:
        self.state, self.ended = CLOSE, True
        yield self._fmt(self.cfg["closing"])

    def _escalate(self, reason: str, reason_text: str) -> Iterator[str]:
        self._set_escalation(reason, reason_text)
        yield self._fmt(self.cfg["escalation"]["message"]) or phrase("escalate", self.formality)

    def _set_escalation(self, reason: str, reason_text: str) -> None:
        self.state = ESCALATE
        self.escalation = Escalation(reason, reason_text, self.cfg["escalation"]["operator_route_id"])
        self.events.append({"type": "agent.escalation", "reason": reason, "reason_text": reason_text})

    def _not_understood(self, then: str) -> Iterator[str]:
        self.misunderstood += 1
        if self.misunderstood >= int(self.cfg["escalation"]["misunderstanding_turns"]):
            if self.cfg["escalation"]["operator_route_id"] or self.ctx.channel == "phone":
                yield from self._escalate("misunderstanding", f"Агент не понял клиента {self.misunderstood} раза подряд")
                return
            self.state, self.ended = CLOSE, True
            yield phrase("give_up", self.formality)
            return
        yield phrase("not_understood", self.formality) + " " + then + " "

    def _reask(self) -> Iterator[str]:
        if self.state == COLLECT and self._current_field() is not None:
            yield self._fmt(self._current_field()["prompt"]) + " "
        elif self.state == CONFIRM:
            yield self._confirm_question()
        else:
            yield phrase("anything_else", self.formality) + " "

    def _answer(self, text: str, then: str) -> Iterator[str]:
        """A question in the middle of collecting: answer it (facts/KB/LLM), then ask again."""
        if self.mode == "llm":
            yield from self._llm_turn(text, instruction="Коротко ответь на вопрос клиента, не задавая вопросов.")
        else:
            answer = self._scripted_answer(text)
            yield (answer or phrase("no_info", self.formality)) + " "
        if not self.ended and self.state != ESCALATE:
            yield then + " "

    # ---- scripted understanding -----------------------------------------------------------------
    def _scripted_answer(self, text: str) -> str | None:
        """Rules of the config, then facts, then the knowledge base; None when nothing fits."""
        rules = self.cfg["llm"]["rules"]
        if rules:
            from core.engines.llm_scripted import ScriptedLlm
            reply = ScriptedLlm(rules, default_reply=_NO_RULE).reply_for(
                LlmRequest(messages=[Message("user", text)]))
            if reply != _NO_RULE:
                return self._fmt(reply)
        fact = _best_fact(text, self.cfg["facts"])
        if fact is not None:
            return fact
        snippets = self._knowledge(text)
        if snippets:
            top = snippets[0]
            text = top.text.strip()
            if top.entry_id is not None and text.startswith(top.source_name):
                text = text[len(top.source_name):].strip()  # a FAQ chunk is "question answer": say the answer
            return _first_sentences(text, 2)
        if intents.is_question(text):
            return phrase("no_info", self.formality)
        return None

    def _parse(self, f: dict[str, Any], text: str, dtmf: str | None) -> Parsed | None:
        return parse_field(f, text, today=self._today(), caller_phone=self.ctx.caller_phone, dtmf=dtmf)

    def _opportunistic(self, text: str, exclude: str) -> None:
        """Other unambiguous fields said in the same breath ("Анна, завтра в десять")."""
        for f in self.fields_def:
            if f["key"] in self.fields or f["key"] == exclude or f["type"] in ("name", "text"):
                continue
            parsed = self._parse(f, text, None)
            if parsed is not None:
                self._store(f, parsed)

    def _store(self, f: dict[str, Any], parsed: Parsed) -> None:
        self.fields[f["key"]] = parsed.value
        self.spoken[f["key"]] = parsed.spoken
        self.partial.pop(f["key"], None)
        self.misunderstood = 0
        if f["key"] in self.confirmed:
            self.confirmed.remove(f["key"])
        self.summary_confirmed = False

    # ---- LLM ------------------------------------------------------------------------------------
    def _llm_extract(self, f: dict[str, Any], text: str) -> Parsed | None:
        schema = {"title": "extract_field", "type": "object", "additionalProperties": False,
                  "required": ["value"], "properties": {"value": {"type": ["string", "null"]}}}
        hint = f"Извлеки из последней реплики клиента значение поля «{f['label']}» ({f['type']})"
        if f["type"] == "choice":
            hint += ": один из вариантов " + ", ".join(c["label"] for c in f["choices"])
        hint += ". Если значения нет, верни null."
        try:
            data = self._llm_json(schema, [Message("system", hint), Message("user", text)])
        except LlmFailed:
            return None
        value = (data or {}).get("value")
        if not isinstance(value, str) or not value.strip():
            return None
        return self._parse(f, value, None)

    def _llm_json(self, schema: dict[str, Any], messages: list[Message]) -> dict[str, Any] | None:
        from jsonschema import Draft202012Validator
        raw = "".join(c.text for c in self._llm_chunks(LlmRequest(messages=messages, max_tokens=200,
                                                                   temperature=0.0, json_schema=schema)))
        try:
            data = json.loads(raw)
        except ValueError:
            return None
        if not isinstance(data, dict) or list(Draft202012Validator(schema).iter_errors(data)):
            return None
        return data

    def _llm_chunks(self, request: LlmRequest) -> Iterator[LlmChunk]:
        assert self.llm_stream is not None
        got = False
        try:
            for chunk in self.llm_stream(request):
                if chunk.finish_reason == "error" and not got:
                    raise LlmFailed("error finish")
                if chunk.text:
                    got = True
                yield chunk
        except LlmFailed:
            raise
        except Exception as exc:  # noqa: BLE001 - any engine failure means: fall back
            raise LlmFailed(str(exc)) from exc

    def _tool_choice(self, text: str, context: Message) -> ToolCall | None:
        """Ask the LLM (JSON-schema constrained) whether this turn needs a tool; run it if so."""
        names = list(self.cfg["tools"])
        if not names:
            return None
        specs = registry.tool_specs(names)
        options: list[dict[str, Any]] = [{"type": "object", "additionalProperties": False, "required": ["tool"],
                                          "properties": {"tool": {"const": "none"}}}]
        for spec in specs:
            options.append({"type": "object", "additionalProperties": False, "required": ["tool", "arguments"],
                            "properties": {"tool": {"const": spec["name"]}, "arguments": spec["parameters"]}})
        schema = {"title": "tool_call", "anyOf": options}
        listing = "\n".join(f"- {s['name']}: {s['description']}" for s in specs)
        messages = [Message("system", system_prompt(self.cfg)), *self.history, context,
                    Message("system", "Нужно ли сейчас вызвать инструмент? Доступны:\n" + listing +
                            "\nВерни {\"tool\": \"none\"}, если инструмент не нужен.")]
        data = self._llm_json(schema, messages)
        if not data or data.get("tool") in (None, "none"):
            return None
        return self._invoke(str(data["tool"]), dict(data.get("arguments") or {}))

    def _llm_turn(self, text: str, instruction: str) -> Iterator[str]:
        snippets = self._knowledge(text)
        context = turn_context(snippets, {self._label(k): v for k, v in self.spoken.items()}, {}, instruction)
        produced = False
        try:
            extra: list[Message] = []
            call = self._tool_choice(text, context)
            if call is not None:
                extra.append(Message("tool", json.dumps({"ok": call.ok, "data": call.data,
                                                         "error": call.error_message}, ensure_ascii=False),
                                     name=call.name))
            static = [Message("system", system_prompt(self.cfg))]
            request = LlmRequest(messages=static + self.history + [context, *extra],
                                 max_tokens=int(self.cfg["llm"]["max_tokens"]),
                                 temperature=float(self.cfg["llm"]["temperature"]), cache_prefix=len(static))
            allowed = self._allowed_texts(snippets, extra)
            for sentence in _sentences(self._llm_chunks(request)):
                if unsupported_numbers(sentence, allowed):
                    yield phrase("no_info", self.formality) + " "
                    self.events.append({"type": "agent.guardrail", "sentence": sentence})
                    return
                produced = True
                yield sentence + " "
            if not produced:
                raise LlmFailed("empty reply")
        except LlmFailed as exc:
            yield from self._llm_fallback(text, str(exc), produced)

    def _llm_fallback(self, text: str, error: str, produced: bool) -> Iterator[str]:
        self.llm_failed = True
        self.events.append({"type": "agent.llm_failed", "error": error})
        log.warning("LLM failed; fallback scenario", extra={"error": error, "trace_id": self.ctx.trace_id})
        if produced:
            return
        policy = self.cfg["adaptive"]["fallback"]["on_llm_failure"]
        message = self._fmt(self.cfg["adaptive"]["fallback"]["message"])
        if policy == "escalate":
            if message:
                yield message + " "
            yield from self._escalate("llm_failed", "Сбой языковой модели")
            return
        if policy == "end":
            self.state, self.ended = CLOSE, True
            yield message or phrase("llm_failed_end", self.formality)
            return
        answer = self._scripted_answer(text)
        yield (answer or self._fmt(self.cfg["llm"]["default_reply"]) or phrase("no_info", self.formality)) + " "

    def _allowed_texts(self, snippets: list[Any], extra: list[Message]) -> list[str]:
        cfg = self.cfg
        texts = [cfg["persona"], cfg["goal"], cfg["greeting"], cfg["closing"], *cfg["facts"],
                 *(s.text for s in snippets), *(m.content for m in extra),
                 *(str(v) for v in self.fields.values()), *self.spoken.values(),
                 *(m.content for m in self.history if m.role == "user"),
                 *(str(v) for v in self.ctx.variables.values()),
                 *(f["prompt"] for f in self.fields_def), json.dumps(self.results, ensure_ascii=False),
                 *(r.get("reply", "") for r in cfg["llm"]["rules"])]
        return [t for t in texts if t]

    # ---- tools and knowledge ---------------------------------------------------------------------
    def _tool_ctx(self) -> ToolContext:
        return ToolContext(project_id=self.ctx.project_id, trace_id=self.ctx.trace_id, call_id=self.ctx.call_id,
                           agent_version_id=self.ctx.agent_version_id, caller_phone=self.ctx.caller_phone,
                           timezone=self.ctx.timezone, sandbox=self.ctx.sandbox, user_id=self.ctx.user_id,
                           variables=dict(self.ctx.variables))

    def _invoke(self, name: str, args: dict[str, Any]) -> ToolCall:
        started = time.perf_counter()
        if name not in self.cfg["tools"]:
            call = ToolCall(name, args, False, {}, "VALIDATION_FAILED", f"Инструмент {name} не включён у агента",
                            0)
        else:
            result = registry.invoke(self._tool_ctx(), name, args)
            call = ToolCall(name, args, result.ok, dict(result.data or {}), result.error_code, result.error_message,
                            result.duration_ms or int((time.perf_counter() - started) * 1000),
                            str(result.invocation_id) if result.invocation_id else None)
        self.tool_calls.append(call)
        self.turn_tool_calls.append(call)
        return call

    def _knowledge(self, text: str) -> list[Any]:
        kcfg = self.cfg["knowledge"]
        if not kcfg["enabled"]:
            return []
        try:
            snippets = retrieve(self.ctx.project_id, text,
                                source_ids=[uuid.UUID(s) for s in kcfg["source_ids"]] or None,
                                limit=int(kcfg["limit"]), run=self.ctx.offload)
        except Exception:  # noqa: BLE001 - a knowledge-base failure must not drop the call
            log.exception("knowledge retrieval failed", extra={"trace_id": self.ctx.trace_id})
            return []
        self.citations = [{"citation": s.citation, "source_name": s.source_name, "score": s.score,
                           "chunk_id": str(s.chunk_id)} for s in snippets]
        return list(snippets)

    def _crm_note(self, text: str) -> dict[str, Any]:
        note_tools = [n for n in self.cfg["tools"] if "note" in n]
        if not note_tools:
            return {"ok": False, "error": "no note tool enabled"}
        call = self._invoke(note_tools[0], {"body": text})
        return {"ok": call.ok, "tool": call.name, "error_code": call.error_code}

    def _write_call(self, result: dict[str, Any]) -> None:
        from models.calls import Call
        call = Call.get_or_none((Call.id == self.ctx.call_id) & (Call.project == self.ctx.project_id))
        if call is None:
            return
        meta = dict(call.metadata_json or {})
        meta["agent"] = {"state": self.state, "goal_reached": self.goal_reached, "escalation": result["escalation"],
                         "tool_calls": result["tool_calls"], "crm_links": result["crm_links"]}
        updates: dict[str, Any] = {"summary": result["summary"], "extracted_json": result["extracted"],
                                   "metadata_json": meta}
        if result["outcome"] and (call.outcome in (None, "answered")):
            updates["outcome"] = result["outcome"]
        from models.base import utcnow
        Call.update(**updates, updated_at=utcnow()).where(Call.id == call.id).execute()

    # ---- helpers ---------------------------------------------------------------------------------
    def _today(self) -> dt.date:
        return self.ctx.current_time().date()

    def _field(self, key: str) -> dict[str, Any] | None:
        return next((f for f in self.fields_def if f["key"] == key), None)

    def _label(self, key: str) -> str:
        f = self._field(key)
        return f["label"] if f else key

    def _next_field(self) -> dict[str, Any] | None:
        return next((f for f in self.fields_def if f.get("required", True) and f["key"] not in self.fields), None)

    def _current_field(self) -> dict[str, Any] | None:
        return self._next_field()

    def _choices_hint(self, f: dict[str, Any]) -> str:
        if f["type"] != "choice":
            return ""
        return " Варианты: " + ", ".join(c["label"] for c in f["choices"]) + "."

    def _confirm_question(self) -> str:
        if self.pending_confirm == SUMMARY:
            return self._summary_question()
        f = self._field(self.pending_confirm or "")
        if f is None:
            return ""
        return phrase("confirm_value", self.formality, label=f["label"],
                      value=self.spoken.get(f["key"], str(self.fields.get(f["key"], "")))) + " "

    def _summary_question(self) -> str:
        summary = "; ".join(f"{f['label']} — {self.spoken.get(f['key'], self.fields[f['key']])}"
                            for f in self.fields_def if f["key"] in self.fields)
        return phrase("confirm_summary", self.formality, summary=summary) + " "

    def _mentioned_field(self, text: str) -> dict[str, Any] | None:
        f_text = fold(text)
        for f in self.fields_def:
            label = fold(f["label"])
            if label and (label in f_text or (len(label) > 4 and label[:5] in f_text)):
                return f
        return None

    def _scope(self) -> dict[str, Any]:
        scope: dict[str, Any] = dict(self.ctx.variables)
        scope.update(self.fields)
        scope.update({f"{k}_spoken": v for k, v in self.spoken.items()})
        scope.update(self.results)
        scope.update({"caller_phone": self.ctx.caller_phone, "call_id": str(self.ctx.call_id) if self.ctx.call_id else None,
                      "summary": self.summary(), "timezone": self.ctx.timezone})
        return scope

    def _fmt(self, template: str) -> str:
        return _render_text(template or "", self._scope())


# ---- pure helpers ---------------------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][\w.]*)\}")


def _lookup(scope: dict[str, Any], path: str) -> Any:
    node: Any = scope
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return None
    return node


def _render_text(template: str, scope: dict[str, Any]) -> str:
    """``{key}`` / ``{result.key}`` placeholders; unknown ones render empty."""
    def sub(m: re.Match[str]) -> str:
        value = _lookup(scope, m.group(1))
        return "" if value is None else str(value)
    return _PLACEHOLDER.sub(sub, template)


def _render_args(args: Any, scope: dict[str, Any]) -> Any:
    """Action arguments: a value that is exactly "{x}" keeps x's type; other strings are templates."""
    if isinstance(args, dict):
        return {k: _render_args(v, scope) for k, v in args.items()}
    if isinstance(args, list):
        return [_render_args(v, scope) for v in args]
    if isinstance(args, str):
        whole = _PLACEHOLDER.fullmatch(args)
        if whole:
            return _lookup(scope, whole.group(1))
        return _render_text(args, scope)
    return args


_STOP = {"сколько", "какой", "какая", "какие", "когда", "почему", "зачем", "скажите", "подскажите", "пожалуйста",
         "можно", "есть", "у", "вас", "вы", "мне", "меня", "это", "а", "и", "в", "на", "по", "ли", "что", "как",
         "где", "стоит", "будет", "нужно", "хочу", "хотел", "хотела", "узнать", "тоже", "ваш", "ваша", "ваши"}


def _stems(text: str) -> set[str]:
    return {w[:5] for w in re.findall(r"[а-яa-z0-9]+", fold(text)) if len(w) >= 3 and w not in _STOP}


def _best_fact(question: str, facts: list[str]) -> str | None:
    """The fact sharing the most word stems with the question, covering most of the question's words.

    "Можно оплатить криптовалютой?" must not get the payment-methods fact: half the question
    (the part that matters) is not in it, and the honest answer is "no information".
    """
    q = _stems(question)
    need = max(1, -(-len(q) * 3 // 5))  # at least 60 % of the question's content words
    best: tuple[int, str] | None = None
    for fact in facts:
        score = len(q & _stems(fact))
        if score >= need and (best is None or score > best[0]):
            best = (score, fact)
    return best[1] if best else None


def _first_sentences(text: str, n: int) -> str:
    parts = re.split(r"(?<=[.!?])\s+", " ".join(text.split()))
    return " ".join(parts[:n])
