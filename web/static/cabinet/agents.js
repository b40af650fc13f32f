/* Agent Studio: the list of agents and creating one from a template. */
"use strict";
(() => {
  const {api, el, fmt} = VAI;
  const STATUS = {draft: "Черновик", published: "Опубликован", active: "Активен", archived: "В архиве"};

  async function load() {
    try {
      const page = await api("GET", "/agents?limit=200");
      document.querySelector("#agents tbody").replaceChildren(...page.items.map((a) => el("tr",
        {class: "clickable", dataset: {agentId: a.id}, onclick: () => { location.href = `/cabinet/agents/${a.id}`; }},
        el("td", {}, el("a", {href: `/cabinet/agents/${a.id}`}, a.name)), el("td", {}, STATUS[a.status] || a.status),
        el("td", {}, a.published_version ? `v${a.published_version}` : "—"),
        el("td", {}, a.draft_version ? `v${a.draft_version}` : "—"), el("td", {}, fmt.dateTime(a.updated_at)))));
      document.getElementById("agents-empty").hidden = page.items.length > 0;
    } catch (e) {
      const box = document.getElementById("agents-error");
      box.textContent = e.status === 404 ? "Раздел агентов пока недоступен" : e.message;
      box.hidden = false;
    }
  }

  const form = document.getElementById("agent-create");
  if (form) {
    api("GET", "/agent-templates").then((t) => {
      const sel = document.getElementById("new-agent-template");
      for (const item of t.items) sel.append(el("option", {value: item.key}, item.title));
    }).catch(() => {});
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const body = {name: document.getElementById("new-agent-name").value};
      const template = document.getElementById("new-agent-template").value;
      if (template) body.template = template;
      try {
        const a = await api("POST", "/agents", body);
        location.href = `/cabinet/agents/${a.id}`;
      } catch (e) { VAI.toast(e.message, "error"); }
    });
  }
  load();
})();
