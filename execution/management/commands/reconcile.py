import time

from django.core.management.base import BaseCommand, CommandError

from execution.broker import get_broker
from execution.models import Reconciliation
from execution.services.reconciliation import reconciliation_run
from execution.services.trading_state import reconciliation_require


class Command(BaseCommand):
    help = (
        "Compare the ledger's open positions with KIS's holdings. With --startup, first "
        "close the startup gate: nothing goes out until a reconciliation succeeds."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--startup",
            action="store_true",
            help="Run as the system starts: halt trading until this succeeds.",
        )
        parser.add_argument(
            "--wait",
            type=float,
            default=0,
            metavar="SECONDS",
            help="Retry every 5 s while KIS cannot be read, up to SECONDS.",
        )

    def handle(self, *args, startup, wait, **options):
        if startup:
            reconciliation_require()
            self.stdout.write("startup gate closed: trading waits for this reconciliation")
        trigger = Reconciliation.Trigger.STARTUP if startup else Reconciliation.Trigger.MANUAL
        deadline = time.monotonic() + wait
        broker = get_broker()
        while True:
            run = reconciliation_run(broker=broker, trigger=trigger)
            if run.result != Reconciliation.Result.FAILED:
                break
            if time.monotonic() + 5 > deadline:
                raise CommandError(f"reconciliation failed: {run.error}")
            self.stderr.write(f"KIS could not be read ({run.error}); retrying in 5 s")
            time.sleep(5)
        for mismatch in run.mismatches.all():
            # The command speaks English, whatever the process's language (the model's str).
            self.stdout.write(
                f"MISMATCH {mismatch.symbol}: ledger {mismatch.ledger_qty}, "
                f"KIS {mismatch.broker_qty}"
            )
        self.stdout.write(
            f"{run.result}: {run.symbols_checked} symbols checked"
            + (f", {len(run.symbols_skipped)} left for next time" if run.symbols_skipped else "")
        )
