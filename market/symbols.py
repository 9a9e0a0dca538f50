"""Stock names from the master files KIS publishes each morning (kospi_code.mst, kosdaq_code.mst:
https://new.real.download.dws.co.kr/common/master/kospi_code.mst.zip and kosdaq_…, unzipped).

Each line, in CP949: the short code (9 characters, space-padded), the standard code (12), the
Korean name, then a fixed-width tail of the market's attributes (227 characters in KOSPI's file,
221 in KOSDAQ's), of which Aegis reads the first: the security group (ST a stock, EF an ETF, EN
an ETN, …; an ETF or ETN pays no transaction tax, execution/costs.py). Only six-character codes
are listed securities' (a longer one is a bond's or a warrant's)."""

import re
from collections.abc import Iterable
from pathlib import Path

from django.db import transaction
from django.db.models import OuterRef, Subquery

from .krx import SYMBOL_PATTERN
from .models import Symbol

TAIL: dict[str, int] = {Symbol.Market.KOSPI: 227, Symbol.Market.KOSDAQ: 221}
CODE, STANDARD = 9, 12
GROUP = re.compile(r"[A-Z]{2}")


class MasterFileError(ValueError):
    """A master file's line is not in the format KIS publishes."""


def master_rows(lines: Iterable[str], market: str) -> list[tuple[str, str, str]]:
    """(code, name, group) of each stock in a master file's lines."""
    pattern = re.compile(SYMBOL_PATTERN)
    found = []
    for number, line in enumerate(lines, 1):
        line = line.rstrip("\r\n")
        if not line:
            continue
        head = line[: -TAIL[market]]
        if len(head) <= CODE + STANDARD:
            raise MasterFileError(f"line {number}: {len(line)} characters, too short for {market}")
        code, name = head[:CODE].strip(), head[CODE + STANDARD :].strip()
        group = line[len(head) : len(head) + 2].strip()
        if len(code) != 6:
            continue
        if not pattern.fullmatch(code) or not name or not GROUP.fullmatch(group):
            raise MasterFileError(f"line {number}: no code, name and group where they belong")
        found.append((code, name, group))
    return found


def market_of(path: Path) -> str:
    name = path.name.lower()
    for market in Symbol.Market.values:
        if name.startswith(market.lower()):
            return market
    raise MasterFileError(f"{path.name}: neither kospi_code.mst nor kosdaq_code.mst")


@transaction.atomic
def symbols_load(paths: Iterable[Path]) -> int:
    """Read every file, then write all their names in one transaction (a bad line in any file
    writes nothing). Returns how many."""
    rows = []
    for path in paths:
        market = market_of(path)
        with path.open(encoding="cp949") as lines:
            rows += [
                Symbol(code=c, name=n, market=market, group=g)
                for c, n, g in master_rows(lines, market)
            ]
    Symbol.objects.bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=["code"],
        update_fields=["name", "market", "group"],
    )
    return len(rows)


def with_names(queryset, field: str = "symbol"):
    """`queryset` with each row's stock name as `symbol_name` (a subquery: no more round trips)."""
    return queryset.annotate(
        symbol_name=Subquery(Symbol.objects.filter(code=OuterRef(field)).values("name")[:1])
    )


def names_of(codes: Iterable[str]) -> dict[str, str]:
    return dict(Symbol.objects.filter(code__in=set(codes)).values_list("code", "name"))
