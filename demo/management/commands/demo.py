"""`make demo`: a simulated KRX trading day on the embedded default (demo/session.py)."""

import json
import sys
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from execution.models import OrderIntent


class Command(BaseCommand):
    help = (
        "Play a simulated KRX trading day against the KIS simulator on the embedded default "
        "(PostgreSQL, tasks in-process) and write its report and charts."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--speed",
            type=float,
            default=10.0,
            help="Simulated seconds per real second (1: the real pace).",
        )
        parser.add_argument("--out", default="var/demo", help="Where the report and charts go.")
        parser.add_argument("--seed", type=int, default=7, help="The price noise's seed.")
        parser.add_argument("--quiet", action="store_true", help="No progress display.")
        parser.add_argument(
            "--short",
            action="store_true",
            help="The same events with less time around them (no close).",
        )
        parser.add_argument(
            "--json", action="store_true", help="End with the report as one JSON line."
        )

    def handle(self, *args, speed, out, seed, quiet, short, json: bool, **options):
        from demo.report import markdown
        from demo.session import Session

        if not settings.CELERY_TASK_ALWAYS_EAGER:
            raise CommandError(
                "The demo runs every process in this one, on the embedded "
                "default: unset REDIS_URL (make demo does)."
            )
        if not speed > 0:
            raise CommandError("--speed must be positive.")
        call_command("migrate", verbosity=0)
        if OrderIntent.objects.exists():
            raise CommandError("The demo needs a fresh database (make demo starts from one).")
        out_dir = Path(out).resolve()
        try:
            result = Session(
                speed=speed, out=out_dir, seed=seed, live=not quiet, short=short, stream=sys.stdout
            ).run()
        except KeyboardInterrupt:
            raise CommandError(
                f"Interrupted: the simulator is stopped; the log so far is in "
                f"{out_dir / 'demo.log'}.",
                returncode=130,
            ) from None
        if not quiet:
            self.stdout.write("\n" + markdown(result).split("![prices]")[0].rstrip())
            self.stdout.write(
                f"\nReport: {out_dir / 'report.md'} · charts: "
                f"{out_dir / 'prices.png'}, {out_dir / 'latency.png'}"
            )
        if json:
            self.stdout.write(_dumps(result))


def _dumps(result: dict) -> str:
    return json.dumps(result)
