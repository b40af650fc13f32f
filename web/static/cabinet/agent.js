/* Agent Studio: config editor with validation messages, versions with diff, publish/rollback, playground. */
"use strict";
(() => {
  const {api, el, fmt} = VAI;
  const root = document.getElementById("agent");
  const agentId = root.dataset.agentId;
  const STATE = {draft: "Черновик", published: "Опубликована", archived: "В архиве"};
  let agent = null;
  let versions = [];
  let editing = null;     // the version number in the editor
  let session = null;     // playground session id
  const $ = (id) => document.getElementById(id);

  function latestDraft() { return versions.filter((v) => v.state === "draft").map((v) => v.version).sort((a, b) => b - a)[0]; }

  async function openVersion(n) {
    const v = await api("GET", `/agents/${agentId}/versions/${n}`);
    editing = v.version;
    $("config-editor").value = JSON.stringify(v.config_json, null, 2);
    $("config-editor").readOnly = v.state !== "draft" || root.dataset.canEdit !== "True";
    $("editing-version").textContent = `v${v.version} · ${STATE[v.state] || v.state}` +
      (v.state !== "draft" ? " (только чтение: создайте черновик)" : "");
    $("editing-version").dataset.version = String(v.version);
    $("config-errors").replaceChildren();
  }

  function renderVersions() {
    $("versions").querySelector("tbody").replaceChildren(...versions.map((v) => el("tr",
      {dataset: {version: String(v.version), state: v.state}},
      el("td", {}, `v${v.version}`), el("td", {class: "state"}, STATE[v.state] || v.state), el("td", {}, v.comment || ""),
      el("td", {}, fmt.dateTime(v.created_at)),
      el("td", {}, el("button", {class: "secondary small", onclick: () => openVersion(v.version)}, "Открыть")))));
    for (const id of ["diff-from", "diff-to"]) {
      $(id).replaceChildren(...versions.map((v) => el("option", {value: String(v.version)}, `v${v.version}`)));
    }
    if (versions.length > 1) {
      $("diff-from").value = String(versions[versions.length - 2].version);
      $("diff-to").value = String(versions[versions.length - 1].version);
    }
  }

  async function load(openNumber) {
    agent = await api("GET", `/agents/${agentId}`);
    $("agent-name").textContent = agent.name;
    versions = (await api("GET", `/agents/${agentId}/versions`)).items.sort((a, b) => a.version - b.version);
    renderVersions();
    await openVersion(openNumber || agent.draft_version || agent.published_version || versions[versions.length - 1].version);
    root.dataset.loaded = "true";
  }

  function showFieldErrors(e) {
    const fields = (e.data && e.data.error && e.data.error.details && e.data.error.details.fields) || {};
    const items = Object.entries(fields).map(([path, msg]) => el("li", {dataset: {path}}, el("code", {}, path), ": ", msg));
    $("config-errors").replaceChildren(...(items.length ? items : [el("li", {}, e.message)]));
  }

  function parsedConfig() {
    try { return JSON.parse($("config-editor").value); } catch (err) {
      $("config-errors").replaceChildren(el("li", {}, "Конфигурация — не корректный JSON: " + err.message));
      return null;
    }
  }

  async function saveDraft() {
    const config = parsedConfig();
    if (config === null) return;
    try {
      await api("PUT", `/agents/${agentId}/versions/${editing}`, {config_json: config, comment: $("config-comment").value});
      VAI.toast(`Черновик v${editing} сохранён`, "ok");
      await load(editing);
    } catch (e) { showFieldErrors(e); }
  }

  async function newDraft() {
    try {
      const v = await api("POST", `/agents/${agentId}/versions`, {based_on: editing, comment: $("config-comment").value || undefined});
      VAI.toast(`Создан черновик v${v.version}`, "ok");
      await load(v.version);
    } catch (e) { showFieldErrors(e); }
  }

  async function publish() {
    if (!confirm(`Опубликовать v${editing}? Новые звонки пойдут на эту версию.`)) return;
    try {
      await api("POST", `/agents/${agentId}/publish`, {version: editing});
      VAI.toast(`Опубликована v${editing}`, "ok");
      await load(editing);
    } catch (e) { showFieldErrors(e); }
  }

  async function rollback() {
    if (!confirm("Вернуть предыдущую опубликованную версию?")) return;
    try {
      const a = await api("POST", `/agents/${agentId}/rollback`, {});
      VAI.toast(`Откат выполнен: опубликована v${a.published_version}`, "ok");
      await load(a.published_version);
    } catch (e) { showFieldErrors(e); }
  }

  async function diff() {
    try {
      const d = await api("GET", `/agents/${agentId}/diff?from=${$("diff-from").value}&to=${$("diff-to").value}`);
      const KIND = {added: "добавлено", removed: "удалено", changed: "изменено"};
      $("diff-changes").replaceChildren(...d.changes.map((c) => el("li", {class: c.kind},
        el("code", {}, c.path), ` — ${KIND[c.kind] || c.kind}: `,
        c.kind !== "added" ? el("span", {class: "del"}, JSON.stringify(c.before)) : null,
        c.kind === "changed" ? " → " : null,
        c.kind !== "removed" ? el("span", {class: "add"}, JSON.stringify(c.after)) : null)));
      $("diff-text").textContent = d.text || "";
    } catch (e) { VAI.toast(e.message, "error"); }
  }

  // ---- playground ----
  function say(kind, text) {
    const item = el("li", {class: kind}, text);
    $("chat").append(item);
    $("chat").scrollTop = $("chat").scrollHeight;
    return item;
  }

  function showFields(fields) {
    const dl = $("chat-fields");
    dl.replaceChildren(...Object.entries(fields || {}).flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, JSON.stringify(v))]));
  }

  async function startChat() {
    $("chat").replaceChildren();
    try {
      const s = await api("POST", `/agents/${agentId}/playground`, {version: editing});
      session = s.session_id;
      $("playground-version").textContent = `v${editing}`;
      if (s.greeting) say("agent", s.greeting);
      showFields(s.fields);
    } catch (e) { say("tool", e.message); }
  }

  async function send(ev) {
    ev.preventDefault();
    const text = $("chat-input").value.trim();
    if (!text) return;
    if (!session) await startChat();
    say("user", text);
    $("chat-input").value = "";
    $("chat-send").disabled = true;
    try {
      const r = await api("POST", `/agents/${agentId}/playground/${session}/messages`, {text});
      for (const t of r.tool_calls || []) {
        say("tool", `⚙ ${t.name}: ${t.ok ? "успешно" : "ошибка " + (t.error_code || "")} (${t.duration_ms} мс)`);
      }
      if (r.reply) say("agent", r.reply);
      if (r.escalation) say("tool", "Перевод на оператора: " + (r.escalation.reason_text || r.escalation.reason));
      if (r.ended) say("tool", "Разговор завершён");
      showFields(r.fields);
      $("chat").dataset.turns = String(Number($("chat").dataset.turns || 0) + 1);
    } catch (e) { say("tool", e.message); }
    finally { $("chat-send").disabled = false; }
  }

  const bind = (id, fn) => { const b = $(id); if (b) b.addEventListener("click", fn); };
  bind("save-draft", saveDraft);
  bind("new-draft", newDraft);
  bind("publish", publish);
  bind("rollback", rollback);
  bind("diff-btn", diff);
  bind("chat-restart", startChat);
  const form = $("chat-form");
  if (form) form.addEventListener("submit", send);
  load().catch((e) => root.replaceChildren(el("p", {class: "error", id: "agent-error"}, e.message)));
})();
