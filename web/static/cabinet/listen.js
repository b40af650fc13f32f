/* Live listen-in: plays a running call's audio (caller and agent) from esl_app's /listen socket.
   Binary frames: 1 channel byte (0 caller, 1 agent) + L16 mono PCM at the call's rate. */
"use strict";
const VAIListen = (() => {
  let current = null;

  class Listening {
    constructor(callId, onState) {
      this.callId = callId;
      this.onState = onState;
      this.heads = {0: 0, 1: 0};   // per-channel play position: caller and agent mix naturally
      this.rate = 8000;
      this.stats = {bytes: {0: 0, 1: 0}};
    }

    async start() {
      const body = await VAI.api("POST", `/calls/${this.callId}/listen`, {});
      this.ctx = new AudioContext();
      this.ws = new WebSocket(body.ws_url);
      this.ws.binaryType = "arraybuffer";
      this.ws.onopen = () => this.ws.send(JSON.stringify({token: body.token}));
      this.ws.onmessage = (ev) => {
        if (typeof ev.data === "string") {
          const msg = JSON.parse(ev.data);
          if (msg.type === "ready") { this.rate = msg.sample_rate; this.onState("listening"); }
          else if (msg.type === "ended") this.onState("ended");
          else if (msg.type === "error") this.onState("error", msg.error);
          return;
        }
        this.play(new Uint8Array(ev.data));
      };
      this.ws.onclose = () => { this.onState("closed"); this.stop(); };
    }

    play(frame) {
      const channel = frame[0];
      const pcm = new Int16Array(frame.buffer.slice(1));
      this.stats.bytes[channel] = (this.stats.bytes[channel] || 0) + pcm.length * 2;
      const buf = this.ctx.createBuffer(1, pcm.length, this.rate);
      const data = buf.getChannelData(0);
      for (let i = 0; i < pcm.length; i++) data[i] = pcm[i] / 32768;
      const src = this.ctx.createBufferSource();
      src.buffer = buf;
      src.connect(this.ctx.destination);
      const at = Math.max(this.heads[channel] || 0, this.ctx.currentTime + 0.1);
      src.start(at);
      this.heads[channel] = at + buf.duration;
    }

    stop() {
      if (this.ws && this.ws.readyState <= WebSocket.OPEN) { try { this.ws.close(); } catch (e) { /* closed */ } }
      if (this.ctx && this.ctx.state !== "closed") this.ctx.close();
    }
  }

  /* The monitor re-renders a call's row on every event, so the state lives here and is painted onto
     whatever button the row has now (and onto new rows by ``decorate``). */
  let state = {callId: null, value: ""};

  function paint(callId) {
    const button = document.querySelector(`tr[data-call-id="${callId}"] [data-action="listen"]`);
    if (button) decorate(button, callId);
  }

  function decorate(button, callId) {
    const value = state.callId === callId ? state.value : "";
    if (value) button.dataset.state = value; else delete button.dataset.state;
    button.textContent = value === "listening" || value === "connecting" ? "Остановить" : "Слушать";
  }

  function setState(callId, value) {
    state = {callId, value};
    paint(callId);
  }

  async function toggle(callId) {
    if (current && current.callId === callId) { current.stop(); current = null; setState(callId, ""); return; }
    if (current) { const prev = current.callId; current.stop(); current = null; setState(prev, ""); }
    const session = new Listening(callId, (value, error) => {
      if (current !== session) return;
      if (value === "error") VAI.toast(`${error.human_title}. ${(error.human_how_to_fix || []).join(" ")}`, "error");
      if (value === "ended" || value === "closed" || value === "error") current = null;
      setState(callId, value === "listening" ? "listening" : value);
    });
    current = session;
    window.vaiListening = session;
    setState(callId, "connecting");
    try {
      await session.start();
    } catch (e) {
      VAI.toast(e.message, "error");
      current = null;
      setState(callId, "error");
    }
  }

  return {toggle, decorate};
})();
