"""Agent Studio in headless Chromium: create from a template, edit a draft (validation messages),
chat in the playground, publish, a second version with diff, roll back."""
from __future__ import annotations

import uuid

from models.agents import Agent, AgentVersion

SET_GREETING = """([greeting, extra]) => {
  const ed = document.getElementById('config-editor');
  const cfg = JSON.parse(ed.value);
  cfg.greeting = greeting;
  Object.assign(cfg, extra);
  ed.value = JSON.stringify(cfg, null, 2);
}"""


def _published(agent_id: str) -> int | None:
    agent = Agent.get_by_id(uuid.UUID(agent_id))
    return AgentVersion.get_by_id(agent.published_version_id).version if agent.published_version_id else None


def test_edit_draft_playground_publish_and_rollback(web_process, tenant, cabinet):
    t = tenant("studio", roles=("owner",))
    web = web_process()
    tab = cabinet(web)
    tab.page.on("dialog", lambda d: d.accept())
    tab.login(*t["users"]["owner"])
    tab.page.click("#nav a[data-nav='cabinet.agents']")
    tab.page.wait_for_selector("#new-agent-template option[value='lead_qualification']", state="attached")
    tab.page.fill("#new-agent-name", "Заявки с сайта")
    tab.page.select_option("#new-agent-template", "lead_qualification")
    tab.page.click("#agent-create-btn")
    tab.page.wait_for_selector("#agent[data-loaded='true']")
    agent_id = tab.page.get_attribute("#agent", "data-agent-id")
    assert tab.page.inner_text("#agent-name") == "Заявки с сайта"
    assert tab.page.get_attribute("#editing-version", "data-version") == "1"
    tab.shot("1-agent-draft")

    # an invalid draft is refused with the field's Russian message
    tab.page.evaluate(SET_GREETING, ["Здравствуйте!", {"adaptive": {"formality": "casual"}}])
    tab.page.click("#save-draft")
    tab.page.wait_for_selector("#config-errors li")
    assert "Допустимые значения: formal, informal" in tab.page.inner_text("#config-errors")
    tab.shot("2-validation-message")
    tab.page.click("#versions tr[data-version='1'] button")  # reload the stored draft
    tab.page.wait_for_function("() => !document.getElementById('config-errors').children.length")
    tab.page.evaluate(SET_GREETING, ["Добрый день! Это тестовая версия. Как к вам обращаться?", {}])
    tab.page.fill("#config-comment", "Новое приветствие")
    tab.page.click("#save-draft")
    tab.page.wait_for_selector("#toast:has-text('Черновик v1 сохранён')")
    stored = AgentVersion.get((AgentVersion.agent == uuid.UUID(agent_id)) & (AgentVersion.version == 1))
    assert stored.config_json["greeting"].startswith("Добрый день! Это тестовая версия.")

    # the playground talks with the edited draft
    tab.page.fill("#chat-input", "Олег")
    tab.page.click("#chat-send")
    tab.page.wait_for_selector("#chat[data-turns='1']")
    chat = tab.page.inner_text("#chat")
    assert "Добрый день! Это тестовая версия." in chat and "Олег" in chat
    assert len(tab.page.query_selector_all("#chat li.agent")) == 2  # greeting and the reply
    tab.shot("3-playground")

    # publish v1
    tab.page.click("#publish")
    tab.page.wait_for_selector("#versions tr[data-version='1'][data-state='published']")
    assert _published(agent_id) == 1
    # a second version, published, then rolled back
    tab.page.click("#new-draft")
    tab.page.wait_for_selector("#editing-version[data-version='2']")
    tab.page.evaluate(SET_GREETING, ["Здравствуйте, вторая версия. Как к вам обращаться?", {}])
    tab.page.click("#save-draft")
    tab.page.wait_for_selector("#toast:has-text('Черновик v2 сохранён')")
    tab.page.click("#publish")
    tab.page.wait_for_selector("#versions tr[data-version='2'][data-state='published']")
    assert _published(agent_id) == 2
    tab.page.select_option("#diff-from", "1")
    tab.page.select_option("#diff-to", "2")
    tab.page.click("#diff-btn")
    tab.page.wait_for_selector("#diff-changes li")
    assert "greeting" in tab.page.inner_text("#diff-changes") and "вторая версия" in tab.page.inner_text("#diff-changes")
    tab.shot("4-published-v2-diff")
    tab.page.click("#rollback")
    tab.page.wait_for_selector("#versions tr[data-version='1'][data-state='published']")
    assert _published(agent_id) == 1
    tab.shot("5-rolled-back")
    assert not tab.failed_requests or all(r.startswith("422 PUT") for r in tab.failed_requests), tab.failed_requests
