"""`python -m kis_simulator`: the KIS-compatible simulator (REST + WebSocket) on loopback.

Prints exactly one line on stdout, "KIS simulator ready: http://HOST:PORT ws://HOST:WSPORT", once
both ports listen (port 0 picks a free one and the line says which); logs go to stderr. Stops
cleanly on SIGTERM or SIGINT. A separate server speaking KIS's protocol: it touches no database
and needs no Django settings.
"""

import argparse
import asyncio
import ipaddress
import logging
import re
import signal
import sys

from core.memory import freeze_startup_objects
from kis.protocol import Flavour

from .server import AccountSpec, SimulatorConfig, serve


def _app(value: str) -> tuple[str, str]:
    appkey, sep, appsecret = value.partition(":")
    if not (sep and appkey and appsecret):
        raise argparse.ArgumentTypeError("--app takes KEY:SECRET")
    return appkey, appsecret


def _account(value: str) -> AccountSpec:
    match = re.fullmatch(r"(\d{8})-(\d{2}):(\d+):([^:^|]+)", value)
    if not match:
        raise argparse.ArgumentTypeError(
            "--account takes CANO-ACNT_PRDT_CD:CASH:HTS_ID, e.g. 50000001-01:100000000:aegis-hts"
        )
    cano, prdt, cash, hts_id = match.groups()
    return AccountSpec(cano=cano, acnt_prdt_cd=prdt, cash=int(cash), hts_id=hts_id)


def _symbol(value: str) -> tuple[str, int, str]:
    match = re.fullmatch(r"([0-9A-Z]{6,12}):(\d+)(?::([^^|]+))?", value)
    if not match:
        raise argparse.ArgumentTypeError(
            "--symbol takes PDNO:PRICE[:NAME], e.g. 005930:71000:삼성전자"
        )
    pdno, price, name = match.groups()
    return pdno, int(price), name or pdno


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m kis_simulator",
        description="Run the KIS-compatible simulator: REST on --port, WebSocket on --ws-port.",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True, help="REST port (0: any free)")
    p.add_argument("--ws-port", type=int, required=True, help="WebSocket port (0: any free)")
    p.add_argument("--flavour", choices=[f.value for f in Flavour], default="real")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--tick-ms",
        type=int,
        default=0,
        help="step every symbol's price every T ms (0: only on /_sim/step)",
    )
    p.add_argument(
        "--rps",
        type=int,
        default=None,
        help="requests per second per app key (default 20 real, 2 paper)",
    )
    p.add_argument(
        "--app",
        action="append",
        default=[],
        type=_app,
        metavar="KEY:SECRET",
        help="register an app (repeatable)",
    )
    p.add_argument(
        "--account",
        action="append",
        default=[],
        type=_account,
        metavar="CANO-01:CASH:HTS_ID",
        help="open an account (repeatable)",
    )
    p.add_argument(
        "--symbol",
        action="append",
        default=[],
        type=_symbol,
        metavar="PDNO:PRICE[:NAME]",
        help="list a symbol (repeatable)",
    )
    p.add_argument("--ping-s", type=float, default=10.0, help="seconds between PINGPONG messages")
    p.add_argument("--allow-remote", action="store_true", help="listen on a non-loopback --host")
    return p


def main(argv: list[str] | None = None) -> None:
    p = parser()
    options = p.parse_args(argv)
    if not _is_loopback(options.host) and not options.allow_remote:
        p.error(
            f"--host {options.host} is not loopback: pass --allow-remote to listen there "
            f"(the simulator has no real authentication)"
        )
    for name in ("port", "ws_port"):
        if not 0 <= getattr(options, name) <= 65_535:
            p.error(f"--{name.replace('_', '-')} must be 0–65535")
    if options.ping_s <= 0 or options.tick_ms < 0:
        p.error("--ping-s must be positive and --tick-ms not negative")
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    config = SimulatorConfig(
        flavour=Flavour(options.flavour),
        seed=options.seed,
        tick_ms=options.tick_ms,
        rps=options.rps,
        ping_s=options.ping_s,
        apps=tuple(options.app),
        accounts=tuple(options.account),
        symbols=tuple(options.symbol),
    )
    asyncio.run(_run(config, host=options.host, port=options.port, ws_port=options.ws_port))


async def _run(config: SimulatorConfig, *, host: str, port: int, ws_port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    def ready(bound_host: str, rest_port: int, stream_port: int) -> None:
        freeze_startup_objects("kis-simulator")  # as Aegis's own servers
        sys.stdout.write(
            f"KIS simulator ready: http://{bound_host}:{rest_port} "
            f"ws://{bound_host}:{stream_port}\n"
        )
        sys.stdout.flush()

    await serve(config, host=host, port=port, ws_port=ws_port, stop=stop, ready=ready)


if __name__ == "__main__":
    main()
