"""The "Поговорить с агентом" page in headless Chromium: a fake microphone speaks to a real voice loop.

Chromium's fake capture device plays a WAV (silence, then a Russian sentence synthesized by
Festival) into getUserMedia; the page's AudioWorklet resamples it to 16 kHz and streams it to
esl_app's /browser socket; Whisper, the scripted agent and Festival answer, and the page shows the
transcript and plays the agent's speech. Real voiceai-web, real voiceai-esl, real browser.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from core.audio import read_wav, resample, wav_bytes
from core.seed import create_user
from models.calls import Call
from tests.support.browser import artifacts_dir
from tests.support.telephony import make_telephony_tenant, wait_until
from tests.test_voice_e2e import AGENT_CONFIG, CALLER_1, festival_speech, similarity  # noqa: F401

CHROMIUM = os.environ.get("VOICEAI_TEST_CHROMIUM", "/usr/bin/chromium")


def _microphone_wav(speech_wav: str, path: Path, lead_s: float = 4.0, tail_s: float = 4.0) -> str:
    """What the fake microphone hears: silence while the greeting plays, the sentence, silence."""
    pcm, rate = read_wav(speech_wav)
    pcm = resample(pcm, rate, 48000)
    silence = lambda s: b"\x00\x00" * int(48000 * s)  # noqa: E731
    path.write_bytes(wav_bytes(silence(lead_s) + pcm + silence(tail_s), 48000))
    return str(path)


def test_talk_page_conversation_through_the_browser(rig_factory, web_process, festival_speech, tmp_path):
    rig = rig_factory(voice=True, stt_engine="whisper", llm_engine="scripted", tts_engine="festival",
                      models_dir=os.environ.get("VOICEAI_MODELS_DIR", str(Path("var/models").resolve())))
    t = make_telephony_tenant("cabtalk", recording=False)
    t["version"].config_json = AGENT_CONFIG
    t["version"].save()
    create_user(t["org"], "owner@cabtalk.test", "Passw0rd-owner", "owner")
    web = web_process(rig.settings, VOICEAI_AUDIO_WS_PORT=rig.settings.audio_ws_port)
    mic = _microphone_wav(festival_speech["caller1"], tmp_path / "mic.wav")
    shots = artifacts_dir() / "test_talk_page_conversation_through_the_browser"
    shots.mkdir(parents=True, exist_ok=True)

    from playwright.sync_api import sync_playwright
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (scripts/lib.sh does)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
            "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={mic}%noloop", "--autoplay-policy=no-user-gesture-required"])
        try:
            ctx = browser.new_context(locale="ru-RU", viewport={"width": 1360, "height": 900})
            page = ctx.new_page()
            page.set_default_timeout(20_000)
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(web.base + "/cabinet/login")
            page.fill("#email", "owner@cabtalk.test")
            page.fill("#password", "Passw0rd-owner")
            page.click("#login-btn")
            page.wait_for_url(re.compile(r".*/cabinet/monitor"))
            # The page is in the menu for whoever may edit agents.
            page.click("a[data-nav='cabinet.talk']")
            page.wait_for_url(re.compile(r".*/cabinet/talk"))
            page.wait_for_selector(f"#talk-agent option[value='{t['agent'].id}']", state="attached")
            page.screenshot(path=str(shots / "1-talk-idle.png"), full_page=True)

            wait_until(lambda: _port_open(rig.settings.audio_ws_port), timeout=60, message="audio server up")
            page.click("#talk-start")
            page.wait_for_selector("#talk-root[data-state='talking']", timeout=30_000)
            call_id = page.get_attribute("#talk-root", "data-call-id")
            # The greeting is shown and its audio arrives.
            page.wait_for_selector("#talk-transcript .talk-agent", timeout=60_000)
            page.wait_for_function("() => window.voiceaiTalk.stats.receivedBytes > 16000", timeout=60_000)
            # The microphone's sentence is recognised and answered.
            page.wait_for_selector("#talk-transcript .talk-caller", timeout=90_000)
            caller_text = page.inner_text("#talk-transcript .talk-caller")
            # Through the browser's 48 kHz capture and the page's resampler Whisper may misspell a word
            # ("стаматологу"); the sentence must still be the one spoken.
            heard = caller_text.split(":", 1)[1].split("(")[0]
            assert similarity(heard, CALLER_1) >= 0.6 and "записаться" in heard, caller_text
            page.wait_for_function("() => document.querySelectorAll('#talk-transcript .talk-agent').length >= 2",
                                   timeout=60_000)
            assert page.evaluate("window.voiceaiTalk.stats.sentFrames") > 100
            page.screenshot(path=str(shots / "2-talk-conversation.png"), full_page=True)

            page.click("#talk-stop")
            page.wait_for_selector("#talk-root[data-state='ended']", timeout=30_000)
            ended = wait_until(lambda: (lambda c: c if c.state == "ended" else None)(Call.get_by_id(call_id)),
                               timeout=30, message="call ended")
            assert ended.is_test and ended.metadata_json["channel"] == "browser" and ended.outcome == "completed"
            assert page.get_attribute("#talk-call-link", "href") == f"/cabinet/calls/{call_id}"
            page.screenshot(path=str(shots / "3-talk-ended.png"), full_page=True)
            assert not errors, errors
        finally:
            browser.close()


def test_talk_page_hidden_without_permission(db, web_process):
    """An operator (no agents.edit) sees neither the menu item nor the page."""
    import requests
    t = make_telephony_tenant("cabtalk2", recording=False)
    create_user(t["org"], "operator@cabtalk2.test", "Passw0rd-operator", "operator")
    web = web_process()
    s = requests.Session()
    login_page = s.get(web.base + "/cabinet/login").text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', login_page).group(1)
    r = s.post(web.base + "/cabinet/login", data={"email": "operator@cabtalk2.test", "password": "Passw0rd-operator",
                                                  "csrf_token": csrf})
    assert r.status_code == 200 and "cabinet.talk" not in r.text
    r = s.get(web.base + "/cabinet/talk")
    assert r.status_code == 403 and "Недостаточно прав" in r.text


def _port_open(port: int) -> bool:
    import socket
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_monitor_listens_live_to_a_running_call(rig_factory, web_process, festival_speech, tmp_path):
    """«Слушать» on the Live Monitor plays the running call (caller and agent) in the browser."""
    rig = rig_factory(voice=True, stt_engine="whisper", llm_engine="scripted", tts_engine="festival",
                      models_dir=os.environ.get("VOICEAI_MODELS_DIR", str(Path("var/models").resolve())))
    t = make_telephony_tenant("cablisten", recording=False)
    t["version"].config_json = AGENT_CONFIG
    t["version"].save()
    rig.apply()
    create_user(t["org"], "supervisor@cablisten.test", "Passw0rd-sup", "supervisor")
    web = web_process(rig.settings, VOICEAI_AUDIO_WS_PORT=rig.settings.audio_ws_port)
    shots = artifacts_dir() / "test_monitor_listens_live_to_a_running_call"
    shots.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--autoplay-policy=no-user-gesture-required"])
        try:
            page = browser.new_context(locale="ru-RU", viewport={"width": 1360, "height": 900}).new_page()
            page.set_default_timeout(20_000)
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(web.base + "/cabinet/login")
            page.fill("#email", "supervisor@cablisten.test")
            page.fill("#password", "Passw0rd-sup")
            page.click("#login-btn")
            page.wait_for_url(re.compile(r".*/cabinet/monitor"))
            call = rig.sim.inbound_call(caller="79161234567", destination="74951234567",
                                        audio=[3500, festival_speech["caller1"], 15000])
            row = rig.call_row(call.uuid, state="in_progress", timeout=30)
            # the conversation is running on the voice server once the agent has greeted
            from models.calls import Transcript
            wait_until(lambda: Transcript.get_or_none(Transcript.call == row.id), timeout=90, message="greeting")
            button = f"#live-calls tr[data-call-id='{row.id}'] [data-action='listen']"
            page.wait_for_selector(button, timeout=30_000)
            page.click(button)
            page.wait_for_selector(f"{button}[data-state='listening']", timeout=60_000)
            page.wait_for_function("() => window.vaiListening.stats.bytes[0] > 48000", timeout=60_000)
            page.wait_for_function("() => window.vaiListening.stats.bytes[1] > 16000", timeout=90_000)
            assert page.inner_text(button) == "Остановить"
            page.screenshot(path=str(shots / "1-monitor-listening.png"), full_page=True)
            call.hangup()
            page.wait_for_selector(f"#live-calls tr[data-call-id='{row.id}']", state="detached", timeout=30_000)
            assert not errors, errors
        finally:
            browser.close()
