"""Festival TTS with the Russian ``msu_ru_nsh`` voice, kept running in server mode.

Why server mode: starting Festival and loading the clunits voice costs ~0.7 s, more than
synthesizing a sentence (~0.2-0.4 s), so a process per sentence doubles the latency. Of the two
ways to keep Festival alive, ``festival --server`` was chosen over feeding ``festival --pipe``
through stdin: the server protocol frames every reply (``WV`` + waveform, ``LP`` + Lisp value,
``ER`` on error, ``OK`` at the end), so the client knows exactly where a waveform ends and that a
command failed, and the audio comes back over the socket with no temporary files. Through a pipe
there is no reply framing at all (errors and prompts go to stdout/stderr unsynchronized) and audio
would have to go through files.

How it runs:

* One ``festival --server`` per engine, on 127.0.0.1 with a free port chosen at start. Its script
  (in a private 0700 temp dir) sets ``server_port``, ``server_access_list`` (loopback only),
  a random ``server_passwd`` (Festival listens on all interfaces; the password and the access list
  keep other hosts and other local users out), RIFF output, selects ``voice_msu_ru_nsh_clunits``
  and synthesizes a warm-up word, all before the server starts accepting.
* Festival forks one child per client connection; the engine keeps ``pool_size`` persistent
  connections (default 1), so a sentence costs one request on an already-warm process and no
  process is started per call. One request at a time per connection (a semaphore of
  ``pool_size``); ``pool_size`` > 1 gives parallel synthesis on several cores.
* If the server or a connection's child dies, the next request notices (process poll, EOF on the
  socket), restarts what is needed and retries once. A request that gets no answer within
  ``request_timeout`` restarts the server (a hung child would hold a core) and fails with
  ``timeout``. ``close()`` kills the whole process group.

Protocol (Festival's server, ``festival/src/arch/festival`` and speech_tools' key stuffing): the
client sends S-expressions; the server answers with zero or more ``WV\\n``/``LP\\n`` blocks, each
terminated by ``ft_StUfF_key`` (a literal occurrence of the key in the data is sent with an ``X``
stuffed before its last byte), then ``OK\\n``, or ``ER\\n`` when evaluation failed. The server
evaluates anything, so only our own script's functions are called, with escaped string literals.

Text: ``core.engines.text_norm_ru.normalize`` first (Festival does not expand digits reliably),
then a whitelist: the voice's letter-to-sound rules accept only Cyrillic, Latin letters, digits and
a few marks; any other character ("«", "—", "…", "№", emoji) makes Festival fail the whole
utterance, so those become spaces or commas here. Text goes to Festival as UTF-8, which is what
festvox-ru expects (its lexicon uses ``utf8explode``; KOI8-R text fails with ``ER``).

Rate: the clunits voice ignores ``Duration_Stretch``, so ``rate`` != 1 is applied to the waveform
with a small WSOLA time stretch (pitch kept), clamped to 0.5..2.0.

Install: ``apt-get install festival festvox-ru`` (Debian). Output: 16 kHz mono 16-bit PCM.
"""
from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import weakref
from pathlib import Path

from core.engines import native

import numpy as np

from core.audio import read_wav, resample, to_array, to_bytes
from core.engines.base import EngineError, EngineUnavailable, TtsAudio, TtsEngine
from core.engines.text_norm_ru import normalize

DEFAULT_VOICE = "voice_msu_ru_nsh_clunits"
INSTALL_HINT = "apt-get install festival festvox-ru"
_KEY = b"ft_StUfF_key"
_STUFFED = _KEY[:-1] + b"X"


class FestivalReplyError(Exception):
    """Festival answered ``ER``: the S-expression failed to evaluate."""


def scheme_string(text: str) -> str:
    """A Scheme string literal for ``text``: backslashes and double quotes escaped."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


_ALLOWED = re.compile(r"[^A-Za-zА-Яа-яЁё0-9 .,!?;:'-]")


def festival_text(text: str) -> str:
    """Reduce text to characters the msu_ru voice can say; typographic marks become pauses."""
    t = text.replace("…", "...")
    t = re.sub(r"[\u2012-\u2015\u2212]", ",", t)               # dashes and minus sign -> pause
    t = re.sub(r"[«»„“”\"()\[\]{}]", " ", t)                    # quotes and brackets
    t = re.sub(r"(?<=[A-Za-zА-Яа-яЁё])-(?=[A-Za-zА-Яа-яЁё])", " ", t)  # "два-три" -> "два три"
    t = re.sub(r"(?:^|\s)-+(?=\s|$)", ",", t)                   # a dash written as a hyphen
    t = _ALLOWED.sub(" ", t)
    t = re.sub(r"'", "", t)
    t = re.sub(r"\s+", " ", t)
    t = re.sub(r"\s*,(?:\s*,)+", ",", t)
    t = re.sub(r"\s+([,.!?;:])", r"\1", t)
    t = re.sub(r"^[\s,.;:!?-]+", "", t)
    return t.strip()


# ---- the wire protocol ----------------------------------------------------------------------------

class _Connection:
    """One client connection (served by one forked Festival child)."""

    def __init__(self, port: int, password: str, timeout: float, generation: int) -> None:
        self.generation = generation
        self.sock = native.tcp_connect("127.0.0.1", port, timeout=timeout)  # shared by pool threads
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.sock.sendall(password.encode() + b"\n")

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("festival closed the connection")
        self.buf += data

    def _read_tag(self) -> bytes:
        while len(self.buf) < 3:
            self._fill()
        tag = bytes(self.buf[:3])
        del self.buf[:3]
        return tag

    def _read_block(self) -> bytes:
        """Data up to the end key; ``ft_StUfF_keX`` in the data stands for the key's own text.

        Festival's C client matches the key byte by byte and misses the terminator when the data
        ends with a prefix of the key (a waveform ending in the byte ``f``); searching for the whole
        key is robust to that. The opposite case, twelve bytes of the key inside a waveform that the
        sender did not stuff, does not happen in practice.
        """
        out = bytearray()
        while True:
            end = self.buf.find(_KEY)
            stuffed = self.buf.find(_STUFFED)
            if stuffed >= 0 and (end < 0 or stuffed < end):
                out += self.buf[:stuffed] + _KEY[:-1]
                del self.buf[:stuffed + len(_STUFFED)]
                continue
            if end >= 0:
                out += self.buf[:end]
                del self.buf[:end + len(_KEY)]
                return bytes(out)
            keep = len(_KEY)  # may hold the start of the key: search it again with more data
            if len(self.buf) > keep:
                out += self.buf[:-keep]
                del self.buf[:-keep]
            self._fill()

    def request(self, expr: str) -> list[tuple[bytes, bytes]]:
        """Send one S-expression; the ``WV``/``LP`` blocks of the reply. ``ER`` raises."""
        self.sock.sendall(expr.encode("utf-8") + b"\n")
        blocks: list[tuple[bytes, bytes]] = []
        while True:
            tag = self._read_tag()
            if tag == b"OK\n":
                return blocks
            if tag == b"ER\n":
                raise FestivalReplyError(expr[:120])
            if tag in (b"WV\n", b"LP\n"):
                blocks.append((tag[:2], self._read_block()))
                continue
            raise ConnectionError(f"unexpected reply from festival: {tag!r}")


# ---- the server process ---------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


class _Server:
    """A ``festival --server`` child process with its script, port and password."""

    def __init__(self, binary: str, voice: str, workdir: str, start_timeout: float) -> None:
        self.binary = binary
        self.voice = voice
        self.workdir = workdir
        self.start_timeout = start_timeout
        self.password = secrets.token_hex(16)
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = os.path.join(workdir, "festival.log")

    def _script(self) -> str:
        return f"""
(set! server_port {self.port})
(set! server_access_list '("127\\\\.0\\\\.0\\\\.1" "localhost"))
(set! server_passwd {scheme_string(self.password)})
(set! server_log_file nil)
(Parameter.set 'Wavefiletype 'riff)
(define (voiceai_voice) current-voice)
(define (voiceai_say text)
  (utt.send.wave.client (utt.synth (eval (list 'Utterance 'Text text))))
  t)
({self.voice})
(utt.synth (eval (list 'Utterance 'Text "проверка связи")))
"""

    def start(self) -> None:
        last_error = ""
        for _attempt in range(3):  # the port can be taken between choosing and binding it
            self.port = _free_port()
            script = os.path.join(self.workdir, "server.scm")
            fd = os.open(script, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(self._script())
            log = open(self.log_path, "wb")
            try:
                self.proc = native.popen([self.binary, "--server", script], stdin=subprocess.DEVNULL,
                                             stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir,
                                             start_new_session=True)
            finally:
                log.close()
            deadline = time.monotonic() + self.start_timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    with native.tcp_connect("127.0.0.1", self.port, timeout=0.5):
                        return
                except OSError:
                    time.sleep(0.05)
            last_error = self.log_tail() or f"festival did not listen within {self.start_timeout:.0f} s"
            self.stop()
            missing = re.search(r"unbound variable : (voice_\S+)", last_error)
            if missing:  # the voice is not installed: retrying will not help
                raise EngineUnavailable("festival", f"festival has no voice {missing.group(1)}", INSTALL_HINT)
        raise EngineError("festival", "failed", f"cannot start festival --server: {last_error}")

    def log_tail(self) -> str:
        try:
            return Path(self.log_path).read_text(errors="replace")[-500:].strip()
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None:
            _kill_group(self.proc)
            self.proc = None


def _children_of(pid: int) -> list[int]:
    """Pids whose parent is ``pid`` (Festival's per-connection children)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read().decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 1 and fields[1] == str(pid):
            out.append(int(entry))
    return sorted(out)


# ---- time stretch ---------------------------------------------------------------------------------

def time_stretch(pcm16: bytes, rate: float, sample_rate: int) -> bytes:
    """Speed speech up (rate > 1) or slow it down without changing pitch (WSOLA)."""
    if abs(rate - 1.0) < 1e-3 or not pcm16:
        return pcm16
    x = to_array(pcm16).astype(np.float64)
    n = int(0.030 * sample_rate)          # 30 ms frames
    hop = n // 2                           # 50 % overlap on output
    tol = int(0.006 * sample_rate)         # search +-6 ms for the best-matching frame
    if len(x) < 2 * n:
        return pcm16
    win = np.hanning(n)
    x = np.concatenate([np.zeros(tol), x, np.zeros(n + 2 * tol)])
    frames = int((len(x) - n - 2 * tol) / (hop * rate))
    y = np.zeros(frames * hop + n)
    wsum = np.zeros_like(y)
    prev = None
    for k in range(frames):
        ideal = int(k * hop * rate) + tol
        if prev is None:
            best = ideal
        else:
            natural = x[prev + hop:prev + hop + n]
            region = x[ideal - tol:ideal + tol + n]
            if len(region) < n or len(natural) < n:
                break
            best = ideal - tol + int(np.argmax(np.correlate(region, natural, mode="valid")))
        y[k * hop:k * hop + n] += x[best:best + n] * win
        wsum[k * hop:k * hop + n] += win
        prev = best
    out = y / np.maximum(wsum, 1e-3)
    return to_bytes(np.round(out[: int(len(pcm16) / 2 / rate)]))


# ---- the engine -----------------------------------------------------------------------------------

class FestivalTts(TtsEngine):
    """Russian speech from a persistent Festival server; 16 kHz PCM."""

    name = "festival"
    sample_rate = 16000

    def __init__(self, voice: str = DEFAULT_VOICE, pool_size: int = 1, binary: str = "festival",
                 start_timeout: float = 30.0, request_timeout: float = 30.0,
                 normalize_text: bool = True) -> None:
        if pool_size < 1:
            raise ValueError("pool_size must be >= 1")
        self.voice = voice
        self.pool_size = pool_size
        self.binary = binary
        self.start_timeout = start_timeout
        self.request_timeout = request_timeout
        self.normalize_text = normalize_text
        self._lock = threading.Lock()              # server start/stop and the idle list
        self._slots = threading.BoundedSemaphore(pool_size)
        self._idle: list[_Connection] = []
        self._server: _Server | None = None
        self._generation = 0
        self._workdir: str | None = None
        self._finalizer: weakref.finalize | None = None
        self._started: list[_Server] = []        # every server started, for the finalizer
        self.restarts = 0

    # -- lifecycle --

    def start(self) -> None:
        """Start the server now (otherwise the first ``synthesize`` does); raises if unavailable."""
        with self._lock:
            self._ensure_server()

    def close(self) -> None:
        """Stop the Festival server and its children."""
        with self._lock:
            self._drop_idle()
            if self._server is not None:
                self._server.stop()
                self._server = None
            if self._finalizer is not None:
                self._finalizer()
                self._finalizer = None
            self._workdir = None

    def __enter__(self) -> FestivalTts:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def server_pid(self) -> int | None:
        """Pid of the Festival server process (None before start)."""
        server = self._server
        return server.proc.pid if server is not None and server.proc is not None else None

    def process_ids(self) -> list[int]:
        """The server pid and its per-connection children: for monitoring and tests."""
        pid = self.server_pid
        return [] if pid is None else [pid] + _children_of(pid)

    def _drop_idle(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()

    def _ensure_server(self) -> _Server:
        """Caller holds ``_lock``. Start or restart the server if it is not running."""
        if self._server is not None and self._server.alive():
            return self._server
        if shutil.which(self.binary) is None:
            raise EngineUnavailable(self.name, f"{self.binary} not found", INSTALL_HINT)
        if self._server is not None:
            self._server.stop()
            self.restarts += 1
        self._drop_idle()
        if self._workdir is None:
            self._workdir = tempfile.mkdtemp(prefix="voiceai-festival-")
            self._started = []
            self._finalizer = weakref.finalize(self, _cleanup, self._workdir, self._started)
        server = _Server(self.binary, self.voice, self._workdir, self.start_timeout)
        self._started.append(server)
        server.start()
        self._generation += 1
        self._server = server
        conn = self._connect(server)
        try:
            blocks = conn.request("(voiceai_voice)")
        except (OSError, FestivalReplyError) as exc:
            conn.close()
            server.stop()
            self._server = None
            raise EngineError(self.name, "failed", f"festival server does not answer: {exc}") from exc
        current = blocks[-1][1].decode(errors="replace").strip() if blocks else ""
        if current != self.voice.removeprefix("voice_"):
            conn.close()
            server.stop()
            self._server = None
            raise EngineUnavailable(self.name, f"voice {self.voice} is not installed (current: {current or '-'}; "
                                    f"{server.log_tail()[-200:]})", INSTALL_HINT)
        self._idle.append(conn)
        return server

    def _restart(self) -> None:
        """Kill the server and its children; the next request starts a new one."""
        with self._lock:
            self._drop_idle()
            if self._server is not None:
                self._server.stop()

    def _connect(self, server: _Server) -> _Connection:
        conn = _Connection(server.port, server.password, self.request_timeout, self._generation)
        return conn

    def _take(self) -> _Connection:
        with self._lock:
            server = self._ensure_server()
            while self._idle:
                conn = self._idle.pop()
                if conn.generation == self._generation:
                    return conn
                conn.close()
            return self._connect(server)

    def _give_back(self, conn: _Connection) -> None:
        with self._lock:
            if conn.generation == self._generation and self._server is not None:
                self._idle.append(conn)
            else:
                conn.close()

    # -- synthesis --

    def prepare(self, text: str) -> str:
        """The exact text Festival will get: normalized, then reduced to what the voice can say."""
        return festival_text(normalize(text) if self.normalize_text else text)

    def _say(self, conn: _Connection, sentence: str) -> bytes:
        blocks = conn.request(f"(voiceai_say {scheme_string(sentence)})")
        waves = [data for tag, data in blocks if tag == b"WV"]
        if not waves:
            raise EngineError(self.name, "failed", "festival returned no waveform")
        return waves[0]

    def _synthesize(self, text: str, voice: str | None, rate: float) -> TtsAudio:
        if voice and voice not in (self.voice, self.voice.removeprefix("voice_")):
            raise EngineError(self.name, "bad_input", f"voice {voice} is not loaded (this engine runs {self.voice})")
        sentence = self.prepare(text)
        if not sentence:
            return TtsAudio(b"", self.sample_rate)
        with self._slots:
            wav = None
            for attempt in (1, 2):
                conn = self._take()
                try:
                    wav = self._say(conn, sentence)
                except FestivalReplyError as exc:
                    self._give_back(conn)
                    raise EngineError(self.name, "failed", f"festival could not synthesize: {exc}") from exc
                except socket.timeout as exc:
                    conn.close()
                    self._restart()  # a hung child would keep a core busy; requests in flight retry
                    raise EngineError(self.name, "timeout", f"no answer in {self.request_timeout:.0f} s") from exc
                except (OSError, ConnectionError) as exc:
                    conn.close()  # the child or the server died: restart what is needed and retry once
                    if attempt == 2:
                        raise EngineError(self.name, "failed", f"festival connection lost: {exc}") from exc
                    continue
                self._give_back(conn)
                break
        assert wav is not None
        pcm, sr = read_wav(wav)
        if sr != self.sample_rate:
            pcm = resample(pcm, sr, self.sample_rate)
        if rate and abs(rate - 1.0) > 1e-3:
            pcm = time_stretch(pcm, min(2.0, max(0.5, rate)), self.sample_rate)
        return TtsAudio(pcm, self.sample_rate)


def _cleanup(workdir: str, servers: list[_Server]) -> None:
    """At garbage collection or exit: kill servers, remove the script directory."""
    for server in servers:
        server.stop()
    shutil.rmtree(workdir, ignore_errors=True)
