/* Live Monitor: current calls, campaigns, messages and spend, updated from the realtime stream. */
"use strict";
(() => {
  const {api, el, fmt, can, DIRECTIONS, STATES} = VAI;
  const calls = new Map();   // call id -> {data, row}
  const tbody = document.querySelector("#live-calls tbody");
  const showCost = can("billing.read");

  function listenButton(id) {
    const button = el("button", {class: "secondary small", "data-action": "listen",
                                 title: "Слушать звонок в реальном времени", onclick: () => VAIListen.toggle(id)},
                      "Слушать");
    VAIListen.decorate(button, id);
    return button;
  }

  function status(c) { return c.human_status || STATES[c.state] || c.state || ""; }

  function render(c) {
    const started = Date.parse(c.started_at || new Date().toISOString());
    const actions = el("td", {class: "actions"},
      el("a", {href: `/cabinet/calls/${c.id}`, class: "button secondary small"}, "Карточка"),
      can("calls.listen") ? listenButton(c.id) : null,
      can("calls.control") ? el("button", {class: "danger small", "data-action": "hangup",
                                           onclick: () => hangup(c.id)}, "Завершить") : null);
    const row = el("tr", {dataset: {callId: c.id, started: String(started)}},
      el("td", {}, DIRECTIONS[c.direction] || c.direction || ""),
      el("td", {class: "num"}, c.from_number || ""),
      el("td", {class: "num"}, c.to_number || ""),
      el("td", {}, c.agent_name || (c.agent_id ? "Агент" : "—")),
      el("td", {class: "status"}, status(c)),
      el("td", {class: "duration"}, fmt.duration((Date.now() - started) / 1000)),
      showCost ? el("td", {class: "cost"}, fmt.money(c.cost_total ?? c.cost_so_far ?? 0, c.currency)) : null,
      actions);
    return row;
  }

  function upsert(c) {
    const prev = calls.get(c.id);
    const data = Object.assign({}, prev ? prev.data : {}, c);
    const row = render(data);
    if (prev) prev.row.replaceWith(row); else tbody.prepend(row);
    calls.set(c.id, {data, row});
    refreshEmpty();
  }

  function remove(id) {
    const prev = calls.get(id);
    if (!prev) return;
    prev.row.remove();
    calls.delete(id);
    refreshEmpty();
  }

  function refreshEmpty() {
    document.getElementById("live-count").textContent = String(calls.size);
    document.getElementById("live-empty").hidden = calls.size > 0;
  }

  async function hangup(id) {
    if (!confirm("Завершить звонок?")) return;
    try {
      await api("POST", `/calls/${id}/hangup`, {});
      VAI.toast("Звонок завершён", "ok");
    } catch (e) { VAI.toast(e.message, "error"); }
  }

  async function sync() {
    try {
      const page = await api("GET", "/calls?live=true&limit=200");
      const seen = new Set();
      for (const c of page.items) { seen.add(c.id); upsert(c); }
      for (const id of [...calls.keys()]) if (!seen.has(id)) remove(id);
    } catch (e) { VAI.toast(e.message, "error"); }
  }

  function addMessage(ev) {
    const list = document.getElementById("messages");
    const p = ev.payload || {};
    const kind = {"message.sent": "Отправлено", "message.delivered": "Доставлено", "message.failed": "Ошибка"}[ev.type];
    list.prepend(el("li", {}, el("strong", {}, kind || ev.type), " ",
                    `${p.channel || ""} ${p.to || ""}`.trim(), " ", el("span", {class: "muted"}, fmt.dateTime(ev.ts))));
    while (list.children.length > 20) list.lastChild.remove();
    document.getElementById("messages-empty").hidden = true;
  }

  function campaignItem(c) {
    const p = c.progress || c.payload || c;
    const done = p.done ?? p.completed ?? p.processed ?? 0;
    const total = p.total ?? p.contacts_total ?? 0;
    return el("li", {dataset: {campaignId: c.id}}, el("strong", {}, c.name || p.name || "Кампания"), " ",
              total ? `${done} из ${total}` : "");
  }

  async function loadCampaigns() {
    if (!can("campaigns.read")) return;
    try {
      const page = await api("GET", "/campaigns?status=running");
      const list = document.getElementById("campaigns");
      list.replaceChildren(...page.items.filter((c) => !c.status || c.status === "running").map(campaignItem));
      document.getElementById("campaigns-empty").hidden = list.children.length > 0;
    } catch (e) { /* campaigns API absent or not permitted: keep the empty state */ }
  }

  function onCampaign(ev) {
    const list = document.getElementById("campaigns");
    const id = ev.entity && ev.entity.id;
    const old = list.querySelector(`[data-campaign-id="${id}"]`);
    if (ev.type === "campaign.finished") { if (old) old.remove(); }
    else {
      const item = campaignItem(Object.assign({id}, ev.payload || {}));
      if (old) old.replaceWith(item); else list.prepend(item);
    }
    document.getElementById("campaigns-empty").hidden = list.children.length > 0;
  }

  function onSpend(ev) {
    const today = document.getElementById("spend-today");
    if (!today) return;
    const p = ev.payload || {};
    if (p.spent !== undefined) today.textContent = fmt.money(p.spent, p.currency);
  }

  function onEvent(ev) {
    const id = ev.entity && ev.entity.id;
    const p = ev.payload || {};
    if (ev.type === "call.started" || ev.type === "call.state_changed") {
      if (p.ended) return;
      const known = calls.has(id);
      upsert(Object.assign({id}, p, ev.type === "call.started" && !known ? {started_at: ev.ts} : {}));
      // the list row carries what events do not: the agent's name, the exact start
      if (!known || (p.agent_id && !calls.get(id).data.agent_name)) sync();
    } else if (ev.type === "call.ended") {
      remove(id);
    } else if (ev.type.startsWith("message.")) {
      addMessage(ev);
    } else if (ev.type.startsWith("campaign.")) {
      onCampaign(ev);
    } else if (ev.type === "budget.threshold_reached") {
      onSpend(ev);
      VAI.toast(p.human_status || "Достигнут порог расходов", "error");
    }
  }

  const MODES = {ws: "В реальном времени", sse: "В реальном времени (SSE)", poll: "Обновление каждые 2 с",
                 reconnecting: "Переподключение…"};
  function onMode(mode) {
    const badge = document.getElementById("rt-mode");
    badge.textContent = MODES[mode] || mode;
    badge.dataset.mode = mode;
  }

  const meter = document.getElementById("spend-meter");
  if (meter) meter.style.width = Math.min(100, Number(meter.dataset.ratio || 0) * 100) + "%";
  setInterval(() => {
    for (const {row} of calls.values()) {
      row.querySelector(".duration").textContent = fmt.duration((Date.now() - Number(row.dataset.started)) / 1000);
    }
  }, 1000);
  sync();
  loadCampaigns();
  VAI.realtime(onEvent, onMode, sync);
})();
