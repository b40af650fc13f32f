"""XML dialplan interpreter (mod_dialplan_xml semantics, the subset documented in docs/fssim.md).

Files are loaded from a directory (reloaded on `reloadxml`): `<include>`, `<context name>`,
`<extension name continue>`, `<condition field expression break regex>` with `<regex>` children,
nested conditions, time conditions, `<action application data inline>` and `<anti-action>`.
`$1..$9` are substituted at hunt time, `${var}` at execution time, as FreeSWITCH does.
"""

from __future__ import annotations

import logging
import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Callable, Optional

if TYPE_CHECKING:  # pragma: no cover
    from .channel import Channel

log = logging.getLogger("fssim.dialplan")

# Caller-profile fields usable in `field=` (switch_caller_get_field_by_name).
PROFILE_FIELDS = {
    "destination_number": lambda ch: ch.profile.destination_number,
    "caller_id_number": lambda ch: ch.profile.caller_id_number,
    "caller_id_name": lambda ch: ch.profile.caller_id_name,
    "ani": lambda ch: ch.profile.ani,
    "aniii": lambda ch: "",
    "network_addr": lambda ch: ch.profile.network_addr,
    "rdnis": lambda ch: "",
    "source": lambda ch: ch.profile.source,
    "context": lambda ch: ch.profile.context,
    "dialplan": lambda ch: ch.profile.dialplan,
    "chan_name": lambda ch: ch.name,
    "uuid": lambda ch: ch.uuid,
    "username": lambda ch: ch.profile.username,
}

WDAYS = {"sun": 1, "mon": 2, "tue": 3, "wed": 4, "thu": 5, "fri": 6, "sat": 7}
MONTHS = {m: i + 1 for i, m in enumerate(["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug",
                                           "sep", "oct", "nov", "dec"])}
TIME_ATTRS = ("year", "yday", "mon", "mday", "week", "mweek", "wday", "hour", "minute",
              "minute-of-day", "time-of-day", "date-time")


@dataclass
class Action:
    application: str
    data: str
    inline: bool = False


@dataclass
class Condition:
    field: Optional[str]
    expression: Optional[str]
    brk: str
    regex_mode: Optional[str]
    regexes: list[tuple[str, str]]
    time_attrs: dict[str, str]
    actions: list[Action]
    anti_actions: list[Action]
    children: list["Condition"] = field(default_factory=list)


@dataclass
class Extension:
    name: str
    cont: bool
    conditions: list[Condition]


def _parse_condition(el: ET.Element) -> Condition:
    actions, anti, children, regexes = [], [], [], []
    for child in el:
        tag = child.tag
        if tag == "action":
            actions.append(Action(child.get("application", ""), child.get("data", ""),
                                  child.get("inline", "false").lower() == "true"))
        elif tag == "anti-action":
            anti.append(Action(child.get("application", ""), child.get("data", ""),
                               child.get("inline", "false").lower() == "true"))
        elif tag == "condition":
            children.append(_parse_condition(child))
        elif tag == "regex":
            regexes.append((child.get("field", ""), child.get("expression", "")))
    return Condition(field=el.get("field"), expression=el.get("expression"),
                     brk=el.get("break", "on-false"), regex_mode=el.get("regex"), regexes=regexes,
                     time_attrs={a: el.get(a, "") for a in TIME_ATTRS if el.get(a) is not None},
                     actions=actions, anti_actions=anti, children=children)


class Dialplan:
    """All contexts loaded from a directory."""

    def __init__(self, directory: Optional[str], default_context: str = "public") -> None:
        self.directory = directory
        self.default_context = default_context
        self.contexts: dict[str, list[Extension]] = {}
        self.errors: list[str] = []
        self.reload()

    def reload(self) -> bool:
        """Re-read every *.xml file; returns False (and keeps errors) when a file does not parse."""
        contexts: dict[str, list[Extension]] = {}
        errors: list[str] = []
        if self.directory and os.path.isdir(self.directory):
            for root, dirs, files in os.walk(self.directory):
                dirs.sort()
                rel = os.path.relpath(root, self.directory)
                dir_context = None if rel == "." else rel.split(os.sep)[0]
                for name in sorted(files):
                    if not name.endswith(".xml"):
                        continue
                    path = os.path.join(root, name)
                    try:
                        tree = ET.parse(path)
                    except ET.ParseError as exc:
                        errors.append(f"{path}: {exc}")
                        continue
                    self._load_element(tree.getroot(), dir_context or self.default_context, contexts)
        self.contexts = contexts
        self.errors = errors
        return not errors

    def _load_element(self, el: ET.Element, context: str, out: dict[str, list[Extension]]) -> None:
        if el.tag == "context":
            context = el.get("name", context)
        for child in el:
            if child.tag == "extension":
                conds = [_parse_condition(c) for c in child if c.tag == "condition"]
                out.setdefault(context, []).append(
                    Extension(child.get("name", ""), child.get("continue", "false").lower() == "true", conds))
            elif child.tag in ("context", "include", "section", "document", "X-PRE-PROCESS"):
                self._load_element(child, context, out)

    # ---- hunting ----
    def hunt(self, ch: "Channel", context: str, now: datetime,
             inline_exec: Callable[[str, str], None]) -> Optional[list[tuple[str, str]]]:
        """Return the application list for the channel (None when no extension matched)."""
        apps: list[tuple[str, str]] = []
        matched_any = False
        for ext in self.contexts.get(context, []):
            proceed = self._eval_conditions(ch, ext.conditions, now, apps, inline_exec)
            if proceed:
                matched_any = True
                if not ext.cont:
                    break
        if not matched_any and not apps:
            return None
        return apps

    def _eval_conditions(self, ch: "Channel", conds: list[Condition], now: datetime,
                         apps: list[tuple[str, str]], inline_exec: Callable[[str, str], None]) -> bool:
        proceed = True
        for cond in conds:
            passed, captures = self._test(ch, cond, now)
            if passed:
                for act in cond.actions:
                    self._add(act, captures, apps, inline_exec)
                if cond.children:
                    passed = self._eval_conditions(ch, cond.children, now, apps, inline_exec)
            else:
                for act in cond.anti_actions:
                    self._add(act, captures, apps, inline_exec)
            proceed = passed
            if cond.brk == "always" or (cond.brk == "on-true" and passed) or \
                    (cond.brk in ("on-false", "") and not passed):
                break
        return proceed

    @staticmethod
    def _add(act: Action, captures: list[str], apps: list[tuple[str, str]],
             inline_exec: Callable[[str, str], None]) -> None:
        data = substitute(act.data, captures)
        if act.inline:
            inline_exec(act.application, data)
        else:
            apps.append((act.application, data))

    def _field_value(self, ch: "Channel", name: str) -> str:
        if name.startswith("$"):
            return expand(ch, name)
        getter = PROFILE_FIELDS.get(name)
        if getter is not None:
            return getter(ch) or ""
        return ch.get_var(name) or ""

    def _test(self, ch: "Channel", cond: Condition, now: datetime) -> tuple[bool, list[str]]:
        captures: list[str] = []
        if cond.time_attrs:
            local = condition_time(ch, now)
            if not all(time_match(attr, value, local) for attr, value in cond.time_attrs.items()):
                return False, captures
        if cond.regex_mode and cond.regexes:
            results = []
            for fld, expr in cond.regexes:
                m = _search(expr, self._field_value(ch, fld))
                results.append(m is not None)
                if m is not None and not captures:
                    captures = [m.group(0)] + [g or "" for g in m.groups()]
            mode = cond.regex_mode
            if mode == "all":
                return all(results), captures
            if mode == "any":
                return any(results), captures
            if mode == "xor":
                return sum(results) == 1, captures
            return False, captures
        if cond.field is None and cond.expression is None:
            return True, captures
        value = self._field_value(ch, cond.field or "")
        m = _search(cond.expression or "", value)
        if m is None:
            return False, captures
        return True, [m.group(0)] + [g or "" for g in m.groups()]


def _search(expr: str, value: str) -> Optional[re.Match[str]]:
    try:
        return re.search(expr, value)
    except re.error as exc:
        log.warning("bad dialplan regex %r: %s", expr, exc)
        return None


def substitute(data: str, captures: list[str]) -> str:
    """switch_perform_substitution: $0..$9 from the last matching expression."""
    if not captures:
        return data

    def rep(m: re.Match[str]) -> str:
        idx = int(m.group(1))
        return captures[idx] if idx < len(captures) else ""
    return re.sub(r"\$(\d)", rep, data)


_VAR_RE = re.compile(r"\$\$?\{([^{}]*(?:\{[^{}]*\}[^{}]*)*)\}")


def expand(ch: "Channel", text: str) -> str:
    """switch_channel_expand_variables, basic: ${var}, $${global}, ${strftime(fmt)}, ${uuid}."""
    if "$" not in text:
        return text

    def rep(m: re.Match[str]) -> str:
        inner = m.group(1)
        if m.group(0).startswith("$${"):
            return ch.sim.global_vars.get(inner, "")
        fm = re.fullmatch(r"strftime\((.*)\)", inner)
        if fm:
            return condition_time(ch, ch.sim.now()).strftime(fm.group(1) or "%Y-%m-%d %H:%M:%S")
        name = inner
        sub = re.fullmatch(r"([^:]+):(-?\d+)(?::(\d+))?", inner)
        if sub:
            name = sub.group(1)
        if name in PROFILE_FIELDS and ch.get_var(name) is None:
            val = PROFILE_FIELDS[name](ch) or ""
        else:
            val = ch.get_var(name) or ch.sim.global_vars.get(name, "")
        if sub:
            off = int(sub.group(2))
            val = val[off:off + int(sub.group(3))] if sub.group(3) else val[off:]
        return val
    prev = None
    out = text
    for _ in range(5):  # nested expansion, bounded
        prev, out = out, _VAR_RE.sub(rep, out)
        if out == prev:
            break
    return out


# ---- time conditions ----
def condition_time(ch: Optional["Channel"], now: datetime) -> datetime:
    """Local time for time conditions: `tod_tz_offset` (hours) or `timezone`, else the sim tz."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    if ch is not None:
        offset = ch.get_var("tod_tz_offset")
        if offset:
            try:
                return now.astimezone(timezone(timedelta(hours=float(offset))))
            except ValueError:
                pass
        tzname = ch.get_var("timezone")
        if tzname:
            try:
                from zoneinfo import ZoneInfo
                return now.astimezone(ZoneInfo(tzname))
            except Exception:
                log.warning("unknown timezone %r", tzname)
    return now


def _num(token: str, names: dict[str, int]) -> int:
    token = token.strip().lower()
    if token in names:
        return names[token]
    return int(token)


def number_match(spec: str, value: int, names: Optional[dict[str, int]] = None) -> bool:
    """switch_number_cmp: comma list of numbers or ranges `a-b` (wrapping ranges allowed)."""
    names = names or {}
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part:
                lo_s, hi_s = part.split("-", 1)
                lo, hi = _num(lo_s, names), _num(hi_s, names)
                if (lo <= hi and lo <= value <= hi) or (lo > hi and (value >= lo or value <= hi)):
                    return True
            elif _num(part, names) == value:
                return True
        except ValueError:
            log.warning("bad time condition value %r", part)
    return False


def _tod_seconds(text: str) -> int:
    parts = [int(p) for p in text.strip().split(":")]
    while len(parts) < 3:
        parts.append(0)
    return parts[0] * 3600 + parts[1] * 60 + parts[2]


def time_match(attr: str, spec: str, t: datetime) -> bool:
    """One time attribute of a condition, FreeSWITCH semantics (wday 1=Sunday, inclusive ranges)."""
    if attr == "year":
        return number_match(spec, t.year)
    if attr == "yday":
        return number_match(spec, t.timetuple().tm_yday)
    if attr == "mon":
        return number_match(spec, t.month, MONTHS)
    if attr == "mday":
        return number_match(spec, t.day)
    if attr == "week":
        return number_match(spec, int(t.strftime("%U")) + 1)
    if attr == "mweek":
        first = t.replace(day=1)
        return number_match(spec, (t.day + (first.isoweekday() % 7) - 1) // 7 + 1)
    if attr == "wday":
        return number_match(spec, t.isoweekday() % 7 + 1, WDAYS)
    if attr == "hour":
        return number_match(spec, t.hour)
    if attr == "minute":
        return number_match(spec, t.minute)
    if attr == "minute-of-day":
        return number_match(spec, t.hour * 60 + t.minute + 1)
    if attr == "time-of-day":
        # switch_tod_cmp: one "HH:MM[:SS]-HH:MM[:SS]" range, start inclusive, end exclusive, no
        # wrap past midnight and no comma lists (anything else never matches).
        cur = t.hour * 3600 + t.minute * 60 + t.second
        if "-" not in spec or "," in spec:
            return False
        lo_s, hi_s = spec.split("-", 1)
        try:
            lo, hi = _tod_seconds(lo_s), _tod_seconds(hi_s)
        except ValueError:
            return False
        return lo <= cur < hi
    if attr == "date-time":
        if "~" not in spec:
            return False
        lo_s, hi_s = spec.split("~", 1)
        naive = t.replace(tzinfo=None)
        try:
            lo = datetime.fromisoformat(lo_s.strip())
            hi = datetime.fromisoformat(hi_s.strip())
        except ValueError:
            return False
        return lo <= naive <= hi
    return True
