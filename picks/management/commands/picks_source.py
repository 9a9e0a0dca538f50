"""Create or update a pick source, and print its token once (on creation or --rotate)."""

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from picks.auth import token_issue
from picks.models import PickSource
from trading.models import ExitProfile


class Command(BaseCommand):
    help = "Create or update a pick source; prints a new token on creation or with --rotate."

    def add_arguments(self, parser):
        parser.add_argument("code", help="Strategy id, e.g. 3001.")
        parser.add_argument("--name")
        parser.add_argument("--profile", help="Name of the exit profile its entries use.")
        parser.add_argument("--rate", help="Most picks it may send, e.g. 100/second.")
        parser.add_argument("--hmac", action="store_true", help="Require a body signature.")
        parser.add_argument("--rotate", action="store_true", help="Issue a new token.")

    def handle(self, *args, code, name, profile, rate, hmac, rotate, **options):
        with transaction.atomic():
            source = PickSource.objects.select_for_update().filter(code=code).first()
            created = source is None
            source = source or PickSource(code=code)
            if name is not None:
                source.name = name
            if rate is not None:
                source.rate_limit = rate
            if hmac:
                source.require_hmac = True
            if profile is not None:
                source.exit_profile = ExitProfile.objects.filter(name=profile).first()
                if source.exit_profile is None:
                    raise CommandError(f"No exit profile is named {profile!r}.")
            try:
                source.full_clean()
            except ValidationError as exc:
                raise CommandError("; ".join(
                    f"{field}: {' '.join(messages)}"
                    for field, messages in exc.message_dict.items())) from None
            source.save()
            token = token_issue(source) if created or rotate else None
        self.stdout.write(f"source {source.code} {'created' if created else 'updated'}")
        if token:
            self.stdout.write(f"token (shown once, keep it secret): {token}")
