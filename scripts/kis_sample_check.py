"""KIS's own sample client against the simulator: an SOR order in Nextrade's after-market, then
the daily orders and the balance, each through KIS's sample functions.

    python scripts/kis_sample_check.py --samples PATH/open-trading-api/examples_llm \\
        --python PATH/venv/bin/python

`--samples` is a checkout of koreainvestment/open-trading-api's `examples_llm` (not part of
Aegis: KIS's code is run, never copied); `--python` an interpreter with what those samples
import (pandas, requests, websockets, PyYAML, pycryptodome). The simulator runs on loopback
with a throwaway app key; the samples read it from a kis_devlp.yaml in a temporary HOME, as
they read KIS's. Exit status 0 when the order is in the daily orders as SOR, routed to and
filled on Nextrade, and the balance holds its shares.
"""

import argparse
import datetime as dt
import json
import os
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kis_simulator.process import Control, simulator_start, simulator_stop  # noqa: E402

CANO, PRDT, SYMBOL, PRICE, QTY = "50000001", "01", "005930", 71_000, 10
SEOUL = dt.timezone(dt.timedelta(hours=9))

# Run by the samples' interpreter, in examples_llm: KIS's functions, their answers as JSON.
DRIVER = """
import json, sys
import kis_auth as ka
from domestic_stock.order_cash.order_cash import order_cash
from domestic_stock.inquire_daily_ccld.inquire_daily_ccld import inquire_daily_ccld
from domestic_stock.inquire_balance.inquire_balance import inquire_balance

cano, prdt, symbol, price, qty, day = sys.argv[1:7]
ka.auth(svr="prod", product=prdt)
placed = order_cash(env_dv="real", ord_dv="buy", cano=cano, acnt_prdt_cd=prdt, pdno=symbol,
                    ord_dvsn="00", ord_qty=qty, ord_unpr=price, excg_id_dvsn_cd="SOR")
print("PLACED " + placed.to_json(orient="records"), flush=True)
input()  # the harness prints a trade that fills it
orders, _ = inquire_daily_ccld(env_dv="real", pd_dv="inner", cano=cano, acnt_prdt_cd=prdt,
                               inqr_strt_dt=day, inqr_end_dt=day, sll_buy_dvsn_cd="00",
                               ccld_dvsn="00", inqr_dvsn="00", inqr_dvsn_3="00",
                               excg_id_dvsn_cd="ALL")
holdings, _ = inquire_balance(env_dv="real", cano=cano, acnt_prdt_cd=prdt, afhr_flpr_yn="N",
                              inqr_dvsn="02", unpr_dvsn="01", fund_sttl_icld_yn="N",
                              fncg_amt_auto_rdpt_yn="N", prcs_dvsn="00")
print("ORDERS " + orders.to_json(orient="records"), flush=True)
print("HOLDINGS " + holdings.to_json(orient="records"), flush=True)
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", required=True, type=Path)
    parser.add_argument("--python", required=True)
    parser.add_argument("--day", default="", help="a trading day, YYYY-MM-DD (default: today)")
    args = parser.parse_args(argv)
    key, secret = secrets.token_hex(18), secrets.token_hex(90)
    proc, base_url, ws_url = simulator_start(
        "--flavour",
        "real",
        "--app",
        f"{key}:{secret}",
        "--account",
        f"{CANO}-{PRDT}:1000000000:samples",
        "--symbol",
        f"{SYMBOL}:{PRICE}:삼성전자",
    )
    control = Control(base_url)
    try:
        day = dt.date.fromisoformat(args.day) if args.day else dt.datetime.now(SEOUL).date()
        evening = dt.datetime.combine(day, dt.time(16, 30), SEOUL)  # Nextrade's after-market
        control.post("/_sim/clock", {"start": evening.isoformat()})
        control.post("/_sim/day", {})
        with tempfile.TemporaryDirectory() as home:
            config = Path(home) / "KIS" / "config"
            config.mkdir(parents=True)
            (config / "kis_devlp.yaml").write_text(
                "\n".join(
                    f"{k}: {json.dumps(v)}"
                    for k, v in {
                        "my_app": key,
                        "my_sec": secret,
                        "paper_app": key,
                        "paper_sec": secret,
                        "my_htsid": "samples",
                        "my_acct_stock": CANO,
                        "my_paper_stock": CANO,
                        "my_prod": PRDT,
                        "prod": base_url,
                        "vps": base_url,
                        "ops": ws_url,
                        "vops": ws_url,
                        "my_agent": "aegis-sample-check",
                    }.items()
                )
                + "\n"
            )
            driver = subprocess.Popen(
                [args.python, "-c", DRIVER, CANO, PRDT, SYMBOL, str(PRICE), str(QTY)]
                + [f"{day:%Y%m%d}"],
                cwd=args.samples,
                env=os.environ | {"HOME": home},
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert driver.stdin is not None and driver.stdout is not None
            answers = {}
            for line in driver.stdout:
                name, _, body = line.partition(" ")
                if name in ("PLACED", "ORDERS", "HOLDINGS"):
                    answers[name] = json.loads(body)
                    print(name, body.strip())
                if name == "PLACED":
                    control.post("/_sim/prices", {"pdno": SYMBOL, "price": PRICE})
                    driver.stdin.write("\n")
                    driver.stdin.flush()
            driver.wait(timeout=60)
        book = control.call("GET", "/_sim/book")
    finally:
        control.close()
        simulator_stop(proc)
    return verdict(answers, book)


def verdict(answers: dict, book: dict) -> int:
    problems = []
    [placed] = answers.get("PLACED") or [{}]
    odno = placed.get("ODNO") or placed.get("odno")
    orders = [o for o in answers.get("ORDERS", []) if o.get("odno") == odno]
    if not orders:
        problems.append(f"order {odno} is not in the daily orders")
    elif orders[0].get("excg_id_dvsn_Cd") != "SOR" or int(orders[0]["tot_ccld_qty"]) != QTY:
        problems.append(f"the daily orders show {orders[0]}")
    routed = [o.get("routed") for o in book["orders"] if o["odno"] == odno]
    if routed != ["NXT"]:
        problems.append(f"routed to {routed}, not Nextrade")
    held = [h for h in answers.get("HOLDINGS", []) if h.get("pdno") == SYMBOL]
    if not held or int(held[0]["hldg_qty"]) != QTY:
        problems.append(f"the balance shows {held}")
    print("OK" if not problems else "FAILED: " + "; ".join(problems))
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
