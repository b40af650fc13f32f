/* Inbox: filters in the address bar, keyset pagination ("Показать ещё"), transcript search. */
"use strict";
(() => {
  const {api, el, fmt, can, DIRECTIONS} = VAI;
  const form = document.getElementById("filters");
  const tbody = document.querySelector("#calls tbody");
  const more = document.getElementById("more");
  const showCost = can("billing.read");
  let cursor = null;

  function params() {
    const p = new URLSearchParams();
    for (const [k, v] of new FormData(form).entries()) if (String(v).trim()) p.set(k, String(v).trim());
    return p;
  }

  function fillForm() {
    const p = new URLSearchParams(location.search);
    for (const [k, v] of p.entries()) {
      const field = form.elements[k];
      if (!field) continue;
      if (field.type === "checkbox") field.checked = v === "true"; else field.value = v;
    }
  }

  function row(c) {
    const href = `/cabinet/calls/${c.id}`;
    return el("tr", {dataset: {callId: c.id}, class: "clickable", onclick: () => { location.href = href; }},
      el("td", {}, el("a", {href}, fmt.dateTime(c.started_at))),
      el("td", {}, DIRECTIONS[c.direction] || c.direction),
      el("td", {class: "num"}, c.from_number),
      el("td", {class: "num"}, c.to_number),
      el("td", {}, c.agent_name || "—"),
      el("td", {class: "outcome"}, c.outcome_label || (c.ended_at ? "—" : "Идёт")),
      el("td", {}, fmt.duration(c.duration_s)),
      showCost ? el("td", {}, fmt.money(c.cost_total, c.currency)) : null,
      el("td", {}, c.has_errors ? el("span", {class: "badge error"}, "Есть") : ""));
  }

  async function load(reset) {
    const p = params();
    if (reset) { cursor = null; tbody.replaceChildren(); }
    if (cursor) p.set("cursor", cursor);
    p.set("limit", "50");
    const errorBox = document.getElementById("filters-error");
    try {
      const page = await api("GET", "/calls?" + p.toString());
      errorBox.hidden = true;
      for (const c of page.items) tbody.append(row(c));
      cursor = page.next_cursor;
      more.hidden = !cursor;
      document.getElementById("calls-empty").hidden = tbody.children.length > 0;
    } catch (e) {
      const fields = e.data && e.data.error && e.data.error.details && e.data.error.details.fields;
      errorBox.textContent = e.message + (fields ? ": " + Object.values(fields).join("; ") : "");
      errorBox.hidden = false;
    }
  }

  async function options() {
    if (can("agents.read")) try {
      const agents = await api("GET", "/agents?limit=200");
      const sel = document.getElementById("f-agent");
      for (const a of agents.items) sel.append(el("option", {value: a.id}, a.name));
    } catch (e) { /* agents API absent */ }
    if (can("campaigns.read")) try {
      const campaigns = await api("GET", "/campaigns?limit=200");
      const sel = document.getElementById("f-campaign");
      for (const c of campaigns.items) sel.append(el("option", {value: c.id}, c.name));
    } catch (e) { /* campaigns API absent */ }
    fillForm();
  }

  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    history.replaceState(null, "", "?" + params().toString());
    load(true);
  });
  form.addEventListener("reset", () => setTimeout(() => {
    history.replaceState(null, "", location.pathname);
    load(true);
  }));
  more.addEventListener("click", () => load(false));
  fillForm();
  options().then(() => load(true));
})();
