import asyncio
import signal

from django.core.management.base import BaseCommand

from core.metrics import ops_server_start
from execution.broker import get_broker
from execution.fills_stream import run


class Command(BaseCommand):
    help = "Subscribe to KIS fill notices and sync each notified order at once."

    def handle(self, *args, **options):
        ops_server_start("fills")  # /metrics and /health on AEGIS_OPS_PORT, when set

        async def main():
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            await run(
                broker=get_broker(),
                stop=stop,
                on_ready=lambda: (self.stdout.write("streaming fill notices"), self.stdout.flush()),
            )

        asyncio.run(main())
