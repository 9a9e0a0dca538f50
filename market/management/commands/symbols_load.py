"""manage.py symbols_load kospi_code.mst kosdaq_code.mst: the stocks' names (market/symbols.py)."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from market.symbols import MasterFileError, symbols_load


class Command(BaseCommand):
    help = "Load stock names from KIS's master files (kospi_code.mst, kosdaq_code.mst)."

    def add_arguments(self, parser):
        parser.add_argument("files", nargs="+", type=Path)

    def handle(self, *args, files, **options):
        try:
            count = symbols_load(files)
        except (MasterFileError, OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"nothing loaded: {exc}") from exc
        self.stdout.write(f"{count} names loaded")
