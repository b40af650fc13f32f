/* Numbers: SIP connections with the "Проверить" check and its human result; phone numbers. */
"use strict";
(() => {
  const {api, el, fmt, can} = VAI;
  const STATUS = {ok: "Работает", failed: "Ошибка", unknown: "Не проверено", pending: "Не проверено"};
  const conns = new Map();

  function checkResult(result, ok) {
    return el("div", {class: "check-result " + (ok ? "ok" : "fail")},
      el("strong", {}, ok ? "Подключение работает" : (result.error_title_ru || "Проверка не прошла")),
      el("p", {}, result.reason_ru || ""),
      (result.how_to_fix_ru || result.how_to_fix || []).length
        ? el("ul", {}, (result.how_to_fix_ru || result.how_to_fix).map((l) => el("li", {}, l))) : null,
      el("ol", {class: "steps"}, (result.steps || []).map((s) =>
        el("li", {class: s.ok ? "ok" : "fail"}, (s.ok ? "✓ " : "✗ ") + (s.title_ru || s.title || s.name || ""),
           s.detail_ru || s.detail ? el("span", {class: "muted"}, " — " + (s.detail_ru || s.detail)) : null))));
  }

  async function check(c, cell, btn) {
    btn.disabled = true; btn.textContent = "Проверяем…";
    try {
      const result = await api("POST", `/sip-connections/${c.id}/check`, {});
      cell.replaceChildren(checkResult(result, true));
    } catch (e) {
      const d = (e.data && e.data.error) || {};
      const details = d.details || {};
      cell.replaceChildren(checkResult({error_title_ru: d.human_title || e.message, reason_ru: details.reason,
                                        how_to_fix_ru: details.how_to_fix || d.human_how_to_fix,
                                        steps: details.steps}, false));
    } finally { btn.disabled = false; btn.textContent = "Проверить"; }
  }

  function connRow(c) {
    const result = el("td", {class: "result", colspan: "6"});
    const btn = can("numbers.test_call") ? el("button", {class: "secondary small", "data-action": "check"}, "Проверить") : null;
    if (btn) btn.addEventListener("click", () => check(c, result, btn));
    if (c.last_check && c.last_check.reason_ru) result.append(checkResult(c.last_check, c.status === "ok"));
    return [el("tr", {dataset: {connId: c.id}},
      el("td", {}, c.name), el("td", {class: "num"}, `${c.provider_host}:${c.port}`), el("td", {}, c.transport),
      el("td", {}, STATUS[c.status] || c.status), el("td", {}, fmt.dateTime(c.last_check_at)), el("td", {}, btn)),
      el("tr", {class: "result-row", dataset: {resultFor: c.id}}, result)];
  }

  async function load() {
    try {
      const page = await api("GET", "/sip-connections?limit=200");
      const tbody = document.querySelector("#connections tbody");
      tbody.replaceChildren(...page.items.flatMap(connRow));
      for (const c of page.items) conns.set(c.id, c);
      document.getElementById("connections-empty").hidden = page.items.length > 0;
      const numbers = await api("GET", "/phone-numbers?limit=200");
      document.querySelector("#numbers tbody").replaceChildren(...numbers.items.map((n) => el("tr", {dataset: {numberId: n.id}},
        el("td", {class: "num"}, n.e164_number), el("td", {}, n.label || ""),
        el("td", {}, (conns.get(n.sip_connection_id) || {}).name || "—"),
        el("td", {}, n.recording_enabled ? "Включена" : "Нет"), el("td", {}, STATUS[n.status] || n.status))));
      document.getElementById("numbers-empty").hidden = numbers.items.length > 0;
    } catch (e) { VAI.toast(e.message, "error"); }
  }
  load();
})();
