"""Agent versions: drafts, publish, rollback (no Flask here; the API and the CLI call these).

A version is editable while it is a draft; publishing freezes it, archives the previously
published one and points ``agents.published_version`` at it. Calls copy
``agents.published_version_id`` into ``calls.agent_version_id`` when they start
(``core.calls.store``, ``core.telephony.outbound``), so a call in progress keeps its version
whatever is published meanwhile. Rollback publishes an earlier version again.
Every saved config is validated (``core.agent.config.validate_config``) and materialised into
``agent_settings``/``agent_policies``/``agent_tools``.
"""
from __future__ import annotations

import uuid
from typing import Any

from core.agent.config import default_config, materialise, validate_config
from core.errors import AppError, NotFound, ValidationFailed
from models.agents import Agent, AgentStatus, AgentVersion, AgentVersionState
from models.base import utcnow


def _locked(agent_id: uuid.UUID) -> Agent:
    """The agent row locked for the transaction (version numbers and publish must not race)."""
    return Agent.select().where(Agent.id == agent_id).for_update().get()


def get_version(agent: Agent, number: int) -> AgentVersion:
    version = AgentVersion.get_or_none((AgentVersion.agent == agent.id) & (AgentVersion.version == number))
    if version is None:
        raise NotFound("agent_version", number)
    return version


def create_agent(project_id: uuid.UUID, name: str, description: str = "", template: str | None = None,
                 user_id: uuid.UUID | None = None) -> Agent:
    """A new agent with draft v1 from the template's config (or the default config)."""
    from core.agent.templates import get_template
    if template is not None:
        tpl = get_template(template)
        if tpl is None:
            raise ValidationFailed({"template": "Неизвестный шаблон агента"})
        config = tpl["config"]
    else:
        config = default_config()
    config = validate_config(config, project_id)
    agent = Agent.create(project=project_id, name=name, description=description, template=template,
                         status=AgentStatus.DRAFT.value, language=config.get("language", "ru-RU"),
                         created_by=user_id)
    version = AgentVersion.create(project=project_id, agent=agent.id, version=1, config_json=config,
                                  comment="Первая версия" + (f" из шаблона «{template}»" if template else ""),
                                  created_by=user_id)
    materialise(version)
    return agent


def new_draft(agent: Agent, config: dict[str, Any] | None = None, comment: str = "",
              based_on: int | None = None, user_id: uuid.UUID | None = None) -> AgentVersion:
    """A new draft: ``config`` as given, else a copy of ``based_on`` (default: the latest version)."""
    agent = _locked(agent.id)
    base = None
    if based_on is not None:
        base = get_version(agent, based_on)
    else:
        base = AgentVersion.select().where(AgentVersion.agent == agent.id).order_by(
            AgentVersion.version.desc()).first()
    if config is None:
        config = dict(base.config_json) if base is not None else default_config()
    config = validate_config(config, agent.project_id)
    last = AgentVersion.select().where(AgentVersion.agent == agent.id).order_by(AgentVersion.version.desc()).first()
    version = AgentVersion.create(project=agent.project_id, agent=agent.id, version=(last.version + 1) if last else 1,
                                  config_json=config, comment=comment, based_on=base.id if base else None,
                                  created_by=user_id)
    materialise(version)
    return version


def update_draft(agent: Agent, number: int, config: dict[str, Any], comment: str | None = None) -> AgentVersion:
    """Edit a draft in place; published and archived versions are immutable (CONFLICT)."""
    _locked(agent.id)
    version = get_version(agent, number)
    if version.state != AgentVersionState.DRAFT.value:
        raise AppError("CONFLICT", {"reason": "Опубликованную версию менять нельзя: создайте новый черновик",
                                    "version": number, "state": version.state})
    version.config_json = validate_config(config, agent.project_id)
    if comment is not None:
        version.comment = comment
    version.updated_at = utcnow()
    version.save()
    materialise(version)
    return version


def publish(agent: Agent, number: int, user_id: uuid.UUID | None = None) -> Agent:
    """Make version ``number`` the one new calls get; the previous one becomes archived."""
    agent = _locked(agent.id)
    version = get_version(agent, number)
    # A config saved before a referenced route/source/tool was deleted must not go live.
    validate_config(version.config_json, agent.project_id)
    now = utcnow()
    if agent.published_version_id and agent.published_version_id != version.id:
        AgentVersion.update(state=AgentVersionState.ARCHIVED.value, updated_at=now).where(
            AgentVersion.id == agent.published_version_id).execute()
    version.state = AgentVersionState.PUBLISHED.value
    version.published_at = now
    version.published_by = user_id
    version.save()
    agent.published_version = version.id
    if agent.status == AgentStatus.DRAFT.value:
        agent.status = AgentStatus.ACTIVE.value
    agent.updated_at = now
    agent.save()
    return agent


def rollback(agent: Agent, number: int | None = None, user_id: uuid.UUID | None = None) -> Agent:
    """Publish an earlier version again (default: the one published before the current one)."""
    agent = _locked(agent.id)
    if number is None:
        current = agent.published_version_id
        q = AgentVersion.select().where((AgentVersion.agent == agent.id) & AgentVersion.published_at.is_null(False)
                                        & (AgentVersion.id != current)).order_by(AgentVersion.published_at.desc())
        previous = q.first()
        if previous is None:
            raise AppError("CONFLICT", {"reason": "Нет ранее опубликованной версии для отката"})
        number = previous.version
    target = get_version(agent, number)
    if target.id == agent.published_version_id:
        raise AppError("CONFLICT", {"reason": f"Версия {number} уже опубликована"})
    if target.published_at is None:
        raise AppError("CONFLICT", {"reason": f"Версия {number} ещё не публиковалась: опубликуйте её, а не откатывайте"})
    return publish(agent, number, user_id)
