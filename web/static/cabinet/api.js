/* VoiceAI cabinet: the /api client, the realtime subscription and small DOM helpers. No dependencies. */
"use strict";
const VAI = (() => {
  const meta = (n) => (document.querySelector(`meta[name="${n}"]`) || {}).content || "";
  let token = meta("vai-token");
  const project = meta("vai-project");
  const csrf = meta("vai-csrf");
  const perms = new Set(meta("vai-perms").split(",").filter(Boolean));

  function toLogin() {
    location.href = "/cabinet/login?next=" + encodeURIComponent(location.pathname + location.search);
  }

  async function renew() {
    const r = await fetch("/cabinet/session/refresh", {method: "POST", headers: {"X-CSRF-Token": csrf},
                                                       credentials: "same-origin"});
    if (!r.ok) { toLogin(); throw new Error("session expired"); }
    token = (await r.json()).access_token;
  }

  async function api(method, path, body, retry = true) {
    const headers = {"Authorization": "Bearer " + token, "X-Project-Id": project};
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const r = await fetch("/api" + path, {method, headers, credentials: "omit",
                                          body: body === undefined ? undefined : JSON.stringify(body)});
    let data = null;
    try { data = await r.json(); } catch (e) { data = null; }
    if (r.status === 401 && retry) {
      if (data && data.error && data.error.code === "AUTH_TOKEN_EXPIRED") {
        await renew();
        return api(method, path, body, false);
      }
      toLogin();
    }
    if (!r.ok) {
      const err = new Error((data && data.error && data.error.human_title) || ("Ошибка " + r.status));
      err.status = r.status; err.data = data;
      throw err;
    }
    return data;
  }

  async function blob(path) {
    const r = await fetch("/api" + path, {headers: {"Authorization": "Bearer " + token, "X-Project-Id": project}});
    if (!r.ok) throw new Error("Ошибка " + r.status);
    return r.blob();
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else if (k === "dataset") Object.assign(node.dataset, v);
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  const DIRECTIONS = {inbound: "Входящий", outbound: "Исходящий"};
  const SPEAKERS = {caller: "Клиент", agent: "Агент", operator: "Оператор"};
  const STATES = {queued: "В очереди", ringing: "Звонит", in_progress: "Идёт разговор",
                  transferring: "Перевод на оператора", with_operator: "С оператором", ended: "Завершён"};

  function duration(seconds) {
    seconds = Math.max(0, Math.floor(seconds || 0));
    const m = Math.floor(seconds / 60), s = seconds % 60;
    return `${m}:${String(s).padStart(2, "0")}`;
  }
  function dateTime(iso) {
    if (!iso) return "—";
    return new Date(iso).toLocaleString("ru-RU", {day: "2-digit", month: "2-digit", year: "numeric",
                                                  hour: "2-digit", minute: "2-digit", second: "2-digit"});
  }
  function money(amount, currency) {
    const n = Number(amount || 0);
    return n.toLocaleString("ru-RU", {minimumFractionDigits: 2, maximumFractionDigits: 2}) +
      (currency === "RUB" || !currency ? " ₽" : " " + currency);
  }
  function msClock(ms) { return duration((ms || 0) / 1000); }

  let toastTimer = null;
  function toast(text, kind) {
    const t = document.getElementById("toast");
    if (!t) return;
    t.textContent = text; t.className = "toast " + (kind || ""); t.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { t.hidden = true; }, 5000);
  }

  /* Realtime: WebSocket, SSE when the socket cannot be used, polling when the gateway is absent.
     Resumes with the last event id after a reconnect. onEvent(event), onMode("ws"|"sse"|"poll"). */
  function realtime(onEvent, onMode, poll) {
    let lastId = "";
    let failures = 0;
    let stopped = false;
    let pollTimer = null;
    const absolute = (url, ws) => {
      const u = new URL(url, location.href);
      if (ws) u.protocol = location.protocol === "https:" ? "wss:" : "ws:";
      return u;
    };
    function handle(raw, id) {
      let ev;
      try { ev = JSON.parse(raw); } catch (e) { return; }
      if (ev.id || id) lastId = ev.id || id;
      onEvent(ev);
    }
    function startPolling() {
      onMode("poll");
      if (poll && !pollTimer) { poll(); pollTimer = setInterval(poll, 2000); }
    }
    async function connect() {
      if (stopped) return;
      let info;
      try {
        info = await api("GET", "/realtime/token");
      } catch (e) {
        if (e.status === 404 || e.status === 405) { startPolling(); return; }
        failures += 1;
        setTimeout(connect, Math.min(30000, 1000 * 2 ** failures));
        startPolling();
        return;
      }
      if (failures < 3 && "WebSocket" in window) {
        const u = absolute(info.stream_url, true);
        if (lastId) u.searchParams.set("last_event_id", lastId);
        const ws = new WebSocket(u.toString());
        let opened = false;
        ws.onopen = () => { opened = true; failures = 0; onMode("ws"); if (poll) poll(); };
        ws.onmessage = (m) => handle(m.data);
        ws.onclose = () => {
          if (!opened) failures += 1;
          onMode("reconnecting");
          setTimeout(connect, opened ? 500 : Math.min(30000, 500 * 2 ** failures));
        };
        return;
      }
      const su = absolute(info.sse_url, false);
      if (lastId) su.searchParams.set("last_event_id", lastId);
      const es = new EventSource(su.toString());
      es.onopen = () => { onMode("sse"); if (poll) poll(); };
      es.onmessage = (m) => handle(m.data, m.lastEventId);
      es.onerror = () => { es.close(); failures = 0; setTimeout(connect, 1000); };
    }
    connect();
    return {stop() { stopped = true; if (pollTimer) clearInterval(pollTimer); }};
  }

  /* Header: switching the project submits the switcher form. */
  document.addEventListener("DOMContentLoaded", () => {
    const sel = document.getElementById("project-select");
    if (sel) sel.addEventListener("change", () => sel.form.submit());
  });

  return {api, blob, el, perms, project, csrf, can: (p) => perms.has(p), realtime, toast,
          fmt: {duration, dateTime, money, msClock}, DIRECTIONS, SPEAKERS, STATES};
})();
