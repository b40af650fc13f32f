// "Поговорить с агентом": the browser microphone to the agent's voice loop and its speech back.
// Protocol (esl_app/browser.py): first text frame {token, sample_rate}; then binary L16 mono frames;
// the server sends binary L16 agent speech and JSON notices (ready, transcript, clear, hangup, error).
(function () {
  'use strict';
  const RATE = 16000;

  function el(id) { return document.getElementById(id); }

  class TalkSession {
    constructor(opts) {
      this.opts = opts;               // {agentId, version, workletUrl, onNotice}
      this.ws = null;
      this.ctx = null;
      this.sources = [];
      this.playHead = 0;
      this.stats = { sentFrames: 0, receivedBytes: 0 };
    }

    async start() {
      const o = this.opts;
      // VAI.api renews an expired access token through the cabinet session and shows catalog errors.
      const body = await VAI.api('POST', `/agents/${o.agentId}/talk`, o.version ? { version: Number(o.version) } : {});
      this.ctx = new AudioContext();
      await this.ctx.audioWorklet.addModule(o.workletUrl);
      const stream = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: true, noiseSuppression: true, channelCount: 1 } });
      this.mic = stream;
      const source = this.ctx.createMediaStreamSource(stream);
      this.node = new AudioWorkletNode(this.ctx, 'mic-capture', { processorOptions: { targetRate: RATE } });
      source.connect(this.node);
      this.ws = new WebSocket(body.ws_url);
      this.ws.binaryType = 'arraybuffer';
      this.ws.onopen = () => {
        this.ws.send(JSON.stringify({ token: body.token, sample_rate: RATE }));
        this.node.port.onmessage = (ev) => {
          if (this.ws && this.ws.readyState === WebSocket.OPEN) { this.ws.send(ev.data); this.stats.sentFrames++; }
        };
      };
      this.ws.onmessage = (ev) => {
        if (typeof ev.data === 'string') { this.notice(JSON.parse(ev.data)); } else { this.play(ev.data); }
      };
      this.ws.onclose = () => { this.notice({ type: 'closed' }); this.cleanup(); };
      return body;
    }

    play(buf) {
      this.stats.receivedBytes += buf.byteLength;
      const pcm = new Int16Array(buf);
      const audio = this.ctx.createBuffer(1, pcm.length, RATE);
      const ch = audio.getChannelData(0);
      for (let i = 0; i < pcm.length; i++) ch[i] = pcm[i] / 32768;
      const src = this.ctx.createBufferSource();
      src.buffer = audio;
      src.connect(this.ctx.destination);
      const now = this.ctx.currentTime;
      this.playHead = Math.max(this.playHead, now + 0.05);
      src.start(this.playHead);
      this.playHead += audio.duration;
      this.sources.push(src);
      src.onended = () => { this.sources = this.sources.filter((s) => s !== src); };
    }

    clearPlayback() {
      for (const s of this.sources) { try { s.stop(); } catch (e) { /* already stopped */ } }
      this.sources = [];
      this.playHead = 0;
    }

    notice(msg) {
      if (msg.type === 'clear') this.clearPlayback();
      if (this.opts.onNotice) this.opts.onNotice(msg, this);
    }

    dtmf(digit) {
      if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify({ type: 'dtmf', digit }));
    }

    hangup() {
      if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify({ type: 'hangup' }));
      setTimeout(() => this.cleanup(), 300);
    }

    cleanup() {
      this.clearPlayback();
      if (this.mic) { this.mic.getTracks().forEach((t) => t.stop()); this.mic = null; }
      if (this.ws && this.ws.readyState <= WebSocket.OPEN) { try { this.ws.close(); } catch (e) { /* closed */ } }
      if (this.ctx && this.ctx.state !== 'closed') { this.ctx.close(); }
    }
  }

  // Page wiring: elements by id; data attributes on #talk-root carry agent, version and API base.
  function wire() {
    const root = el('talk-root');
    if (!root) return;
    const log = el('talk-transcript');
    const status = el('talk-status');
    let session = null;
    const speakerName = { caller: 'Вы', agent: 'Агент', operator: 'Оператор' };

    function line(speaker, text, extra) {
      const row = document.createElement('div');
      row.className = `talk-line talk-${speaker}`;
      row.dataset.speaker = speaker;
      row.textContent = `${speakerName[speaker] || speaker}: ${text}${extra || ''}`;
      log.appendChild(row);
      log.scrollTop = log.scrollHeight;
    }

    function onNotice(msg) {
      if (msg.type === 'ready') {
        status.textContent = 'Идёт разговор — говорите';
        root.dataset.callId = msg.call_id; root.dataset.state = 'talking';
        const link = el('talk-call-link');
        link.href = `/cabinet/calls/${msg.call_id}`; link.hidden = false;
      }
      else if (msg.type === 'transcript') {
        const conf = msg.confidence != null && msg.speaker === 'caller' ? ` (уверенность ${Math.round(msg.confidence * 100)}%)` : '';
        line(msg.speaker, msg.interrupted && msg.heard != null ? `${msg.heard} [перебили]` : msg.text, conf);
      } else if (msg.type === 'clear') { root.dataset.bargeIn = String(Number(root.dataset.bargeIn || 0) + 1); }
      else if (msg.type === 'error') {
        status.textContent = `${msg.error.human_title}. ${(msg.error.human_how_to_fix || []).join(' ')}`;
        root.dataset.state = 'error';
      } else if (msg.type === 'hangup' || msg.type === 'closed') {
        if (root.dataset.state !== 'error') { status.textContent = 'Разговор завершён'; root.dataset.state = 'ended'; }
        el('talk-start').disabled = false; el('talk-stop').disabled = true;
      }
    }

    el('talk-start').addEventListener('click', async () => {
      el('talk-start').disabled = true;
      status.textContent = 'Подключаемся…';
      log.textContent = '';
      root.dataset.state = 'connecting';
      session = new TalkSession({ agentId: el('talk-agent').value, version: el('talk-version').value,
                                  workletUrl: root.dataset.workletUrl, onNotice });
      window.voiceaiTalk = session;
      try {
        await session.start();
        el('talk-stop').disabled = false;
      } catch (err) {
        const e = err && err.data && err.data.error;
        status.textContent = e ? `${e.human_title}. ${(e.human_how_to_fix || []).join(' ')}`
          : `Нет доступа к микрофону или голосовому серверу: ${err && err.message ? err.message : err}`;
        root.dataset.state = 'error';
        session.cleanup();
        el('talk-start').disabled = false;
      }
    });
    el('talk-stop').addEventListener('click', () => { if (session) session.hangup(); });
    VAI.api('GET', '/agents').then((page) => {
      const select = el('talk-agent');
      for (const a of page.items) {
        const opt = document.createElement('option');
        opt.value = a.id;
        opt.textContent = a.published_version ? `${a.name} (v${a.published_version})` : `${a.name} (черновик)`;
        if (a.id === root.dataset.agentId) opt.selected = true;
        select.appendChild(opt);
      }
      if (!page.items.length) { status.textContent = 'В проекте пока нет агентов: создайте агента в разделе «Агенты».'; el('talk-start').disabled = true; }
    }).catch((err) => { status.textContent = err.message; });
    document.querySelectorAll('[data-dtmf]').forEach((b) => b.addEventListener('click', () => {
      if (session) session.dtmf(b.dataset.dtmf);
    }));
  }

  window.VoiceAITalk = TalkSession;
  document.addEventListener('DOMContentLoaded', wire);
})();
