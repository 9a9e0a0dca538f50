import signal
import threading

from django.core.management.base import BaseCommand

from core.metrics import ops_server_start
from execution.listener import CHANNEL, listen


class Command(BaseCommand):
    help = "LISTEN new_intent (intents written outside Aegis) and enqueue their execution."
    requires_system_checks = []

    def handle(self, *args, **options):
        ops_server_start("listener")  # /metrics and /health on AEGIS_OPS_PORT, when set
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        listen(
            stop=stop,
            on_ready=lambda: (
                self.stdout.write(f"listening on {CHANNEL}", ending="\n") or self.stdout.flush()
            ),
        )
