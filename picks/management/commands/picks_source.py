"""Create or update a pick source, and print its token once (on creation or --rotate)."""

import argparse

from django.core.management.base import BaseCommand, CommandError

from picks.services import PickSourceInvalid, source_upsert
from trading.models import ExitProfile


class Command(BaseCommand):
    help = "Create or update a pick source; prints a new token (once) on creation or with --rotate."

    def add_arguments(self, parser):
        parser.add_argument("code", help="Strategy id, e.g. 3001.")
        parser.add_argument("--name")
        parser.add_argument("--profile", help="Name of the exit profile its entries use.")
        parser.add_argument(
            "--rate",
            help="Most picks it may send, e.g. 5/second (the default: "
            "settings.PICKS_DEFAULT_RATE_LIMIT).",
        )
        parser.add_argument(
            "--hmac",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="Require (--hmac) or stop requiring (--no-hmac) a body "
            "signature keyed by AEGIS_PICKS_HMAC_<CODE>.",
        )
        parser.add_argument(
            "--rotate", action="store_true", help="Issue a new token; the old one stops working."
        )

    def handle(self, *args, code, name, profile, rate, hmac, rotate, **options):
        exit_profile = None
        if profile is not None:
            exit_profile = ExitProfile.objects.filter(name=profile).first()
            if exit_profile is None:
                raise CommandError(
                    f"No exit profile is named {profile!r}: create it in the admin first."
                )
        try:
            source, created, token = source_upsert(
                code=code,
                name=name,
                exit_profile=exit_profile,
                rate_limit=rate,
                require_hmac=hmac,
                rotate=rotate,
            )
        except PickSourceInvalid as exc:
            raise CommandError(f"Source {code!r} not saved: {exc}") from None
        self.stdout.write(f"source {source.code} {'created' if created else 'updated'}")
        if token:
            self.stdout.write(f"token (shown once, keep it secret): {token}")
        elif not source.token_sha256:
            self.stdout.write("this source has no token yet: run again with --rotate")
