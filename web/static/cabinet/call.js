/* Call card: outcome, transcript, actions, errors with how-to-fix, cost, recording, report, add to KB. */
"use strict";
(() => {
  const {api, el, fmt, can, DIRECTIONS, SPEAKERS, STATES} = VAI;
  const id = document.getElementById("call").dataset.callId;
  const TOOL_STATUS = {pending: "Ожидает", started: "Выполняется", succeeded: "Успешно", failed: "Ошибка",
                       cancelled: "Отменено"};
  const HANDOFF_STATUS = {pending: "Готовится", delivered: "Передано", accepted: "Оператор ответил",
                          failed: "Не удалось", cancelled: "Отменено"};

  function fact(dl, name, value) { dl.append(el("dt", {}, name), el("dd", {}, value ?? "—")); }

  function renderFacts(c) {
    document.getElementById("call-title").textContent = `${c.from_number} → ${c.to_number}`;
    const dl = document.getElementById("call-facts");
    dl.replaceChildren();
    fact(dl, "Итог", el("span", {id: "call-outcome"}, c.outcome_label || STATES[c.state] || c.state));
    fact(dl, "Направление", DIRECTIONS[c.direction]);
    fact(dl, "Начало", fmt.dateTime(c.started_at));
    fact(dl, "Длительность", fmt.duration(c.duration_s));
    fact(dl, "Агент", c.agent_name);
    if (c.hangup_cause_text) fact(dl, "Причина завершения", c.hangup_cause_text);
    fact(dl, "Trace ID", el("code", {}, c.trace_id));
    document.getElementById("call-summary").textContent = c.summary || "";
  }

  function renderTranscript(turns) {
    const list = document.getElementById("transcript");
    list.replaceChildren(...turns.map((t) => el("li", {class: "turn " + t.speaker, dataset: {speaker: t.speaker}},
      el("div", {class: "turn-head"},
        el("strong", {}, SPEAKERS[t.speaker] || t.speaker), " ",
        el("span", {class: "muted time"}, fmt.msClock(t.ts_start_ms)),
        t.confidence !== null && t.confidence !== undefined
          ? el("span", {class: "confidence" + (t.confidence < 0.6 ? " low" : "")},
               `уверенность ${Math.round(t.confidence * 100)}%`) : null,
        t.interrupted ? el("span", {class: "badge"}, "перебит") : null),
      el("p", {class: "text"}, t.text),
      t.interrupted && t.heard_text ? el("p", {class: "muted"}, "Клиент услышал: «" + t.heard_text + "»") : null)));
    document.getElementById("transcript-empty").hidden = turns.length > 0;
  }

  function renderTools(tools) {
    const tbody = document.querySelector("#tools tbody");
    tbody.replaceChildren(...tools.map((t) => el("tr", {class: t.status},
      el("td", {}, t.tool_name), el("td", {}, TOOL_STATUS[t.status] || t.status),
      el("td", {}, t.duration_ms === null ? "—" : `${t.duration_ms} мс`), el("td", {}, String(t.attempt)),
      el("td", {}, t.error_title || t.error_code || ""))));
    document.getElementById("tools-empty").hidden = tools.length > 0;
  }

  function renderIssues(issues) {
    const list = document.getElementById("issues");
    list.replaceChildren(...issues.map((i) => el("li", {class: "issue"},
      el("strong", {}, i.title), " ", el("span", {class: "muted"}, `${i.code} · ${fmt.dateTime(i.created_at)}`),
      i.comment ? el("p", {}, i.comment) : null,
      el("ul", {class: "how-to-fix"}, i.how_to_fix.map((line) => el("li", {}, line))))));
    document.getElementById("issues-empty").hidden = issues.length > 0;
  }

  function renderCost(cost) {
    const box = document.getElementById("cost");
    if (!box || !cost) return;
    const tbody = box.querySelector("tbody");
    tbody.replaceChildren(...cost.lines.map((l) => el("tr", {dataset: {component: l.component}},
      el("td", {}, l.title), el("td", {class: "num"}, fmt.money(l.amount, cost.currency)))));
    document.getElementById("cost-total").textContent = "Итого: " + fmt.money(cost.total, cost.currency);
  }

  function renderHandoffs(packets) {
    document.getElementById("handoffs-card").hidden = packets.length === 0;
    document.getElementById("handoffs").replaceChildren(...packets.map((p) => el("li", {},
      el("strong", {}, p.reason_text || p.reason), " — ", HANDOFF_STATUS[p.status] || p.status,
      p.summary ? el("p", {}, p.summary) : null)));
  }

  function renderEvents(events) {
    document.getElementById("events").replaceChildren(...(events || []).map((e) => el("li", {},
      el("span", {class: "muted"}, fmt.dateTime(e.ts)), " ", e.human_status || e.type)));
  }

  function renderRecording(c) {
    if (!can("calls.listen")) return;
    const btn = document.getElementById("recording-load");
    document.getElementById("recording-none").hidden = !!c.recording_url;
    btn.hidden = !c.recording_url;
    btn.onclick = async () => {
      btn.disabled = true;
      try {
        const data = await VAI.blob(c.recording_url.replace(/^\/api/, ""));
        const player = document.getElementById("recording-player");
        player.src = URL.createObjectURL(data);
        player.hidden = false; btn.hidden = true;
        player.play().catch(() => {});
      } catch (e) { VAI.toast(e.message, "error"); btn.disabled = false; }
    };
  }

  async function load() {
    try {
      const c = await api("GET", `/calls/${id}`);
      renderFacts(c); renderTranscript(c.transcript); renderTools(c.tool_invocations); renderIssues(c.issues);
      renderCost(c.cost); renderHandoffs(c.handoff_packets); renderEvents(c.events); renderRecording(c);
      document.getElementById("call").dataset.loaded = "true";
    } catch (e) {
      document.getElementById("call").replaceChildren(el("p", {class: "error", id: "call-error"}, e.message));
    }
  }

  const reportBtn = document.getElementById("report-btn");
  const reportForm = document.getElementById("report-form");
  if (reportBtn) reportBtn.addEventListener("click", () => { reportForm.hidden = !reportForm.hidden; });
  if (reportForm) reportForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      await api("POST", `/calls/${id}/issue`, {comment: document.getElementById("report-comment").value});
      reportForm.hidden = true; reportForm.reset();
      VAI.toast("Спасибо, проблема записана", "ok");
      load();
    } catch (e) { VAI.toast(e.message, "error"); }
  });
  const kbBtn = document.getElementById("kb-btn");
  if (kbBtn) kbBtn.addEventListener("click", async () => {
    try {
      await api("POST", `/calls/${id}/add-to-kb`, {});
      VAI.toast("Разговор отправлен в базу знаний на проверку", "ok");
    } catch (e) {
      VAI.toast(e.status === 404 || e.status === 405 ? "База знаний пока недоступна" : e.message, "error");
    }
  });
  load();
})();
