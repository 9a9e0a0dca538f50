import asyncio
import signal

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from core.memory import freeze_startup_objects
from core.metrics import health_check_register, ops_server_start
from execution.broker import get_broker
from execution.exceptions import InvalidInput
from execution.validation import check_symbol
from market.bars import bars_flush
from trading.pricesync import PriceSync


class Command(BaseCommand):
    help = (
        "Stream KIS trades for every managed open position (and --watch symbols), keep "
        "prices_best current, and evaluate each trade's positions at once."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--watch",
            default="",
            metavar="SYMBOLS",
            help="Comma-separated KRX codes to follow as well, e.g. 005930,000660",
        )

    def handle(self, *args, watch, **options):
        watchlist = tuple(s.strip() for s in watch.split(",") if s.strip())
        try:
            for symbol in watchlist:
                check_symbol(symbol)
        except InvalidInput as exc:
            raise CommandError(str(exc)) from None
        ops_server_start("pricesync")  # /metrics and /health on AEGIS_OPS_PORT, when set

        async def main():
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            sync = PriceSync(broker=get_broker(), watchlist=watchlist)
            health_check_register("stream", sync.stream.health)
            await sync.run(
                stop,
                on_ready=lambda: (
                    freeze_startup_objects("pricesync"),
                    self.stdout.write(f"pricesync following {len(sync.symbols)} symbols"),
                    self.stdout.flush(),
                ),
            )

        asyncio.run(main())
        try:
            bars_flush()  # the minutes still open: a clean stop loses no bar of the day
        except DatabaseError as exc:
            self.stderr.write(f"pricesync: the open minute bars were not written ({exc})")
