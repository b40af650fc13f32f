"""Actions the agent can take during a call (CRM, calendar, later messaging and external CRMs).

``core.tools.base`` is the contract: a tool is a named, JSON-schema-described action; providers
(the built-in CRM and calendar now, Bitrix24/amoCRM/Google Calendar later) plug in behind it, and
``core.tools.registry.invoke`` is the single entry point that validates arguments, records the
``tool_invocations`` row and emits ``tool.started/succeeded/failed``.
"""
