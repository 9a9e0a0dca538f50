"""`manage.py kis_simulator`: the KIS-compatible simulator (REST + WebSocket) on loopback.

Prints exactly one line on stdout, "KIS simulator ready: http://HOST:PORT ws://HOST:WSPORT", once
both ports listen (port 0 picks a free one and the line says which); logs go to stderr. Stops
cleanly on SIGTERM or SIGINT. Touches no database.
"""

import asyncio
import ipaddress
import re
import signal
import sys

from django.core.management.base import BaseCommand, CommandError

from aegis.memory import freeze_startup_objects
from execution.brokers.kis.protocol import Flavour
from execution.brokers.simulator.server import AccountSpec, SimulatorConfig, serve


def _app(value: str) -> tuple[str, str]:
    appkey, sep, appsecret = value.partition(":")
    if not (sep and appkey and appsecret):
        raise CommandError("--app takes KEY:SECRET")
    return appkey, appsecret


def _account(value: str) -> AccountSpec:
    match = re.fullmatch(r"(\d{8})-(\d{2}):(\d+):([^:^|]+)", value)
    if not match:
        raise CommandError("--account takes CANO-ACNT_PRDT_CD:CASH:HTS_ID, e.g. 50000001-01:"
                           "100000000:aegis-hts")
    cano, prdt, cash, hts_id = match.groups()
    return AccountSpec(cano=cano, acnt_prdt_cd=prdt, cash=int(cash), hts_id=hts_id)


def _symbol(value: str) -> tuple[str, int, str]:
    match = re.fullmatch(r"([0-9A-Z]{6,12}):(\d+)(?::([^^|]+))?", value)
    if not match:
        raise CommandError("--symbol takes PDNO:PRICE[:NAME], e.g. 005930:71000:삼성전자")
    pdno, price, name = match.groups()
    return pdno, int(price), name or pdno


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Command(BaseCommand):
    help = "Run the KIS-compatible simulator: REST on --port, WebSocket on --ws-port."
    requires_system_checks = []
    requires_migrations_checks = False

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, required=True, help="REST port (0: any free)")
        parser.add_argument("--ws-port", type=int, required=True,
                            help="WebSocket port (0: any free)")
        parser.add_argument("--flavour", choices=[f.value for f in Flavour], default="real")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--tick-ms", type=int, default=0,
                            help="step every symbol's price every T ms (0: only on /_sim/step)")
        parser.add_argument("--rps", type=int, default=None,
                            help="requests per second per app key (default 20 real, 2 paper)")
        parser.add_argument("--app", action="append", default=[], type=_app,
                            metavar="KEY:SECRET", help="register an app (repeatable)")
        parser.add_argument("--account", action="append", default=[], type=_account,
                            metavar="CANO-01:CASH:HTS_ID", help="open an account (repeatable)")
        parser.add_argument("--symbol", action="append", default=[], type=_symbol,
                            metavar="PDNO:PRICE[:NAME]", help="list a symbol (repeatable)")
        parser.add_argument("--ping-s", type=float, default=10.0,
                            help="seconds between PINGPONG messages")
        parser.add_argument("--allow-remote", action="store_true",
                            help="listen on a non-loopback --host")

    def handle(self, *args, **options):
        host = options["host"]
        if not _is_loopback(host) and not options["allow_remote"]:
            raise CommandError(f"--host {host} is not loopback: pass --allow-remote to listen "
                               f"there (the simulator has no real authentication)")
        for name in ("port", "ws_port"):
            if not 0 <= options[name] <= 65_535:
                raise CommandError(f"--{name.replace('_', '-')} must be 0–65535")
        if options["ping_s"] <= 0 or options["tick_ms"] < 0:
            raise CommandError("--ping-s must be positive and --tick-ms not negative")
        config = SimulatorConfig(
            flavour=Flavour(options["flavour"]), seed=options["seed"],
            tick_ms=options["tick_ms"], rps=options["rps"], ping_s=options["ping_s"],
            apps=tuple(options["app"]), accounts=tuple(options["account"]),
            symbols=tuple(options["symbol"]))
        asyncio.run(self._run(config, host=host, port=options["port"],
                              ws_port=options["ws_port"]))

    async def _run(self, config: SimulatorConfig, *, host: str, port: int, ws_port: int) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)

        def ready(bound_host: str, rest_port: int, stream_port: int) -> None:
            freeze_startup_objects("kis-simulator")  # as Aegis's own servers
            sys.stdout.write(f"KIS simulator ready: http://{bound_host}:{rest_port} "
                             f"ws://{bound_host}:{stream_port}\n")
            sys.stdout.flush()

        await serve(config, host=host, port=port, ws_port=ws_port, stop=stop, ready=ready)
