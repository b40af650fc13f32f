"""``python -m scripts.trunk_check``: «Проверить подключение» of a SIP trunk from a shell.

For admins without the web cabinet (or before it is set up): the same check as
``POST /sip-connections/{id}/check``, with parameters on the command line. Prints the steps and
the verdict in Russian, or the API's JSON with ``--json``. Exit code 0: the trunk works; 2: it
does not (or the arguments are wrong).

    python -m scripts.trunk_check --host sip.provider.ru --login 100 --password-env SIP_PASSWORD
    fs_cli -x 'sofia status gateway voiceai_1' | python -m scripts.trunk_check --host ... --gateway-status -
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Sequence, TextIO

from core.telephony.trunk_check import TrunkCheckReport, TrunkParams, check_trunk

EXIT_OK = 0
EXIT_FAILED = 2

_MARKS = {"ok": "[ OK ]", "warning": "[ !! ]", "failed": "[FAIL]"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m scripts.trunk_check",
        description="Проверка подключения SIP-транка: DNS, ответ на OPTIONS, регистрация с логином "
                    "и паролем.")
    p.add_argument("--host", required=True, help="адрес SIP-сервера провайдера (имя или IP)")
    p.add_argument("--port", type=int, default=5060, help="порт SIP (по умолчанию 5060)")
    p.add_argument("--transport", choices=("udp", "tcp"), default="udp", help="транспорт (по умолчанию udp)")
    p.add_argument("--login", help="логин SIP-учётной записи")
    pw = p.add_mutually_exclusive_group()
    pw.add_argument("--password", help="пароль (виден в списке процессов — лучше --password-env)")
    pw.add_argument("--password-env", metavar="VAR", help="имя переменной окружения с паролем")
    p.add_argument("--auth-username", help="имя для авторизации, если отличается от логина")
    p.add_argument("--realm", help="realm / домен регистрации, если провайдер его указал")
    p.add_argument("--ip-auth", action="store_true", help="провайдер пускает по IP, без регистрации")
    p.add_argument("--gateway-status", metavar="FILE",
                   help="вывод «sofia status gateway <имя>» из fs_cli (файл или - для stdin)")
    p.add_argument("--timeout", type=float, default=2.0, help="ожидание ответа на один SIP-запрос, с")
    p.add_argument("--retries", type=int, default=1, help="повторы запроса при тишине")
    p.add_argument("--json", action="store_true", help="вывести результат в JSON (как в API)")
    return p


def render_text(report: TrunkCheckReport, out: TextIO) -> None:
    """Human output: one line per step, then the verdict and what to do."""
    mode = "по IP" if report.auth_mode == "ip" else "с регистрацией"
    print(f"Проверка подключения {report.host}:{report.port} ({report.transport.upper()}, {mode})", file=out)
    for step in report.steps:
        mark = _MARKS.get(step.status, "[ ?? ]")
        print(f"  {mark} {step.title_ru}: {step.detail_ru} ({round(step.duration_ms)} мс)", file=out)
    print("", file=out)
    print(("Итог: " if report.ok else "Ошибка: ") + report.reason_ru, file=out)
    if report.how_to_fix_ru:
        print("Что сделать:", file=out)
        for fix in report.how_to_fix_ru:
            print(f"  - {fix}", file=out)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the check; 0 if the trunk works, 2 if not or on bad arguments."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed the usage error
        return EXIT_OK if exc.code == 0 else EXIT_FAILED
    password = args.password
    if args.password_env:
        password = os.environ.get(args.password_env)
        if password is None:
            print(f"Ошибка: переменная окружения {args.password_env} не задана", file=sys.stderr)
            return EXIT_FAILED
    if not args.ip_auth and (not args.login or not password):
        print("Ошибка: для проверки регистрации укажите --login и --password (или --password-env); "
              "для провайдера с авторизацией по IP — --ip-auth", file=sys.stderr)
        return EXIT_FAILED
    gateway_text = None
    if args.gateway_status:
        try:
            if args.gateway_status == "-":
                gateway_text = sys.stdin.read()
            else:
                with open(args.gateway_status, encoding="utf-8") as fh:
                    gateway_text = fh.read()
        except OSError as exc:
            print(f"Ошибка: не удалось прочитать {args.gateway_status}: {exc.strerror}", file=sys.stderr)
            return EXIT_FAILED
    params = TrunkParams(host=args.host, port=args.port, transport=args.transport, login=args.login,
                         password=password, auth_mode="ip" if args.ip_auth else "register",
                         auth_username=args.auth_username, realm=args.realm)
    report = check_trunk(params, gateway_text, timeout=args.timeout, retries=args.retries)
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False, indent=2))
    else:
        render_text(report, sys.stdout)
    return EXIT_OK if report.ok else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
