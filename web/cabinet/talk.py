""""Поговорить с агентом": talk to any agent version from the browser, no phone line needed.

The page asks ``POST /api/agents/{id}/talk`` for a one-time token and streams the microphone to
esl_app's audio server (``/browser``); the agent's speech comes back on the same socket
(web/static/js/talk.js). The conversation is stored as a test call, visible in the Inbox.
"""
from __future__ import annotations

from flask import request

from web.cabinet.pages import page
from web.cabinet.views import render_page


@page("/talk", permission="agents.edit", summary="Поговорить с агентом")
def talk():
    return render_page("cabinet/talk.html", active="cabinet.talk", agent_id=request.args.get("agent", ""),
                       version=request.args.get("version", ""))
