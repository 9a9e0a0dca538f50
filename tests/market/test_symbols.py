"""Stock names from KIS's master files (market/symbols.py), beside the codes in the admin."""

from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from market.models import Symbol
from market.symbols import TAIL, MasterFileError, master_rows
from tests.support.ledger import open_position

pytestmark = pytest.mark.django_db


def line(code: str, name: str, market: str, group: str = "ST") -> str:
    """A master file's line: code (9), standard code (12), name, the market's fixed tail, which
    opens with the security group."""
    head = f"{code:<9}{'KR7' + code + '000':<12}{name}".ljust(21 + 40)
    return head + group + "0" * (TAIL[market] - 2)


def master(tmp_path: Path, market: str, lines: list[str]) -> Path:
    path = tmp_path / f"{market.lower()}_code.mst"
    path.write_text("\n".join(lines) + "\n", encoding="cp949")
    return path


def test_names_load_from_both_markets_and_show_beside_codes(tmp_path, admin_client):
    kospi = master(
        tmp_path,
        "KOSPI",
        [
            line("005930", "삼성전자", "KOSPI"),
            line("069500", "KODEX 200", "KOSPI", "EF"),
            line("F70100022", "KR채권", "KOSPI"),
        ],
    )
    kosdaq = master(tmp_path, "KOSDAQ", [line("247540", "에코프로비엠", "KOSDAQ")])
    call_command("symbols_load", str(kospi), str(kosdaq))
    assert dict(Symbol.objects.values_list("code", "name")) == {
        "005930": "삼성전자",
        "069500": "KODEX 200",
        "247540": "에코프로비엠",
    }  # the bond's nine-character code is left out
    assert Symbol.objects.get(code="069500").group == "EF"
    assert Symbol.objects.get(code="247540").market == "KOSDAQ"
    open_position("005930", 10, 70_000)
    html = admin_client.get("/admin/execution/position/").content.decode()
    assert "005930 삼성전자" in html and "70,000" in html


def test_a_bad_file_loads_nothing(tmp_path):
    good = master(tmp_path, "KOSPI", [line("005930", "삼성전자", "KOSPI")])
    short = master(tmp_path, "KOSDAQ", [line("247540", "에코프로비엠", "KOSDAQ"), "247540 short"])
    with pytest.raises(CommandError, match="nothing loaded: line 2"):
        call_command("symbols_load", str(good), str(short))
    assert not Symbol.objects.exists()
    with pytest.raises(MasterFileError, match="no code, name and group"):
        master_rows([line("00593a", "x", "KOSPI")], "KOSPI")
    with pytest.raises(MasterFileError, match="no code, name and group"):
        master_rows([line("005930", "삼성전자", "KOSPI", "  ")], "KOSPI")
