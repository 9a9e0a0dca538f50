"""The KIS simulator as a real server process on loopback, shared by a test module: the
kis_sim fixtures of tests/conftest.py.

    def test_something(kis_sim):          # flavour "real"; kis_sim_paper for "paper"
        kis_sim.base_url                  # "http://127.0.0.1:<port>"  (REST, /_sim/ control)
        kis_sim.ws_url                    # "ws://127.0.0.1:<port>"    (WebSocket; path /tryitout)
        kis_sim.flavour                   # "real" or "paper"
        kis_sim.appkey, kis_sim.appsecret # the default app, generated per run
        kis_sim.cano, kis_sim.acnt_prdt_cd, kis_sim.hts_id   # "50000001", "01", "aegis-hts"
        kis_sim.control("/_sim/step", {"pdno": "005930", "steps": 1})   # POST, JSON in and out
        kis_sim.control("/_sim/faults", method="DELETE")
        kis_sim.book()                    # GET /_sim/book
        kis_sim.reinstall()               # re-register the defaults after a /_sim/reset of your own

Before each test the simulator is reset (/_sim/reset: a new day, no tokens, no faults, default
limits) and given the defaults again: the app, account 50000001-01 with 100,000,000 KRW and HTS
id "aegis-hts", and symbol 005930 at 71,000 (prev close 71,000).
"""

import json
import os
import secrets
import selectors
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
READY_PREFIX = "KIS simulator ready: "
READY_TIMEOUT_S = 60


@dataclass
class KisSim:
    base_url: str
    ws_url: str
    flavour: str
    appkey: str = field(repr=False)
    appsecret: str = field(repr=False)
    cano: str = "50000001"
    acnt_prdt_cd: str = "01"
    hts_id: str = "aegis-hts"
    cash: int = 100_000_000
    symbol: str = "005930"
    price: int = 71_000

    def control(self, path: str, payload: dict | None = None, method: str = "POST") -> dict:
        data = None if payload is None and method == "GET" else json.dumps(payload or {}).encode()
        request = urllib.request.Request(
            self.base_url + path,
            data=data,
            method=method,
            headers={"content-type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise AssertionError(
                f"{method} {path} → HTTP {exc.code}: {exc.read()[:500]!r}"
            ) from None

    def book(self) -> dict:
        return self.control("/_sim/book", method="GET")

    def account_set(
        self, holdings: dict[str, int] | None = None, *, avg_price: int = 71_000, cash: int = 0
    ) -> None:
        """Replace the default account: `holdings` ({symbol: qty}, each at `avg_price`) and
        `cash` (default: the fixture's). What trades outside Aegis leave at KIS."""
        self.control(
            "/_sim/accounts",
            {
                "cano": self.cano,
                "acnt_prdt_cd": self.acnt_prdt_cd,
                "cash": cash or self.cash,
                "hts_id": self.hts_id,
                "holdings": [
                    {"pdno": s, "qty": q, "avg_price": avg_price}
                    for s, q in (holdings or {}).items()
                ],
            },
        )

    def reinstall(self) -> None:
        """Register the default app, account and symbol (after a reset)."""
        self.control("/_sim/apps", {"appkey": self.appkey, "appsecret": self.appsecret})
        self.account_set()
        self.control(
            "/_sim/prices",
            {
                "pdno": self.symbol,
                "price": self.price,
                "prev_close": self.price,
                "name": "삼성전자",
            },
        )

    def reset(self, seed: int = 0) -> None:
        self.control("/_sim/reset", {"seed": seed})
        self.reinstall()


def _start(flavour: str):
    log = tempfile.NamedTemporaryFile(prefix=f"kis-sim-{flavour}-", suffix=".log", delete=False)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kis_simulator",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--ws-port",
            "0",
            "--flavour",
            flavour,
            "--seed",
            "0",
            "--tick-ms",
            "0",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env=os.environ.copy(),
    )
    try:
        line = _ready_line(proc)
    except BaseException:  # noqa: BLE001 - stopped, then raised as what it means
        _stop(proc)
        log.seek(0)
        raise RuntimeError(
            f"the KIS simulator did not start:\n{log.read()[-3000:].decode()}"
        ) from None
    http_url, ws_url = line[len(READY_PREFIX) :].split()
    sim = KisSim(
        base_url=http_url,
        ws_url=ws_url,
        flavour=flavour,
        appkey=secrets.token_hex(18),
        appsecret=secrets.token_hex(90),
    )
    return proc, sim, log


def _ready_line(proc: subprocess.Popen) -> str:
    deadline = time.monotonic() + READY_TIMEOUT_S
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not selector.select(timeout=max(0.0, deadline - time.monotonic())):
                break
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"exited with {proc.wait()} before it was ready")
            if line.startswith(READY_PREFIX):
                return line.strip()
    raise TimeoutError(f"no ready line within {READY_TIMEOUT_S} s")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _process(flavour: str):
    proc, sim, log = _start(flavour)
    try:
        yield sim
    finally:
        _stop(proc)
        log.close()
        os.unlink(log.name)
