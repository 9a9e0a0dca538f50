"""The production process set as real OS processes on loopback, for the drill.

Services: the throw-away PostgreSQL (+PgBouncer) and Redis that scripts/with-services.sh starts
(DATABASE_URL, DATABASE_DIRECT_URL, REDIS_URL in the environment; `make drill` runs the drill
under it), each behind a FaultProxy (drill/proxy.py) that the processes connect through. Every
scenario gets a fresh database copied from a migrated template, a flushed Redis and a simulator
of its own (`python -m kis_simulator`). The processes are those of docker-compose.yml with the
same commands, queues and environment: web (gunicorn), worker (default, trading), the execution
worker (execution, picks on threads; one per "host"), beat, pricesync, fills, listener.

A process can be killed with SIGKILL at any moment and started again, or run under Debian's
faketime with its clock moved. Cluster.stop() ends every process and server it started (their
process groups, by id), also after a failure or Ctrl-C.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import re
import secrets
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from .proxy import FaultProxy

logger = logging.getLogger("drill.cluster")

ROOT = Path(__file__).resolve().parents[1]
DB_NAME = "aegis_drill"
TEMPLATE_DB = "aegis_drill_template"
ACCOUNT_CANO, ACCOUNT_PRDT = "50000001", "01"
HTS_ID = "drill-hts"
CASH = 10_000_000_000
READY_TIMEOUT_S = 120
REDIS_DB = 13


class DrillError(RuntimeError):
    """The drill could not set its cluster up (not a finding about Aegis)."""


class FaketimeMissing(DrillError):
    pass


# --- processes ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Spec:
    argv: tuple[str, ...]
    direct: bool = False  # straight to PostgreSQL (compose's x-aegis-env-direct)
    ready: str | None = None  # a regular expression its log prints once it is ready
    env: tuple[tuple[str, str], ...] = ()


PY = sys.executable
CELERY = str(Path(sys.executable).with_name("celery"))
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))
EXECUTION_ENV = (
    ("DATABASE_HEALTH_CHECKS", "false"),
    ("DATABASE_LOCK_TIMEOUT_MS", "2000"),
    ("DATABASE_STATEMENT_TIMEOUT_MS", "10000"),
)


def execution_worker(host: str) -> Spec:
    return Spec(
        (
            CELERY,
            "-A",
            "aegis",
            "worker",
            "-Q",
            "execution,picks",
            "--pool",
            "threads",
            "--concurrency",
            "4",
            "-l",
            "info",
            "-n",
            f"execution@{host}",
        ),
        direct=True,
        ready=r"ready\.",
        env=EXECUTION_ENV,
    )


SPECS: dict[str, Spec] = {
    "web": Spec(
        (
            GUNICORN,
            "aegis.wsgi:application",
            "--bind",
            "127.0.0.1:{web_port}",
            "--workers",
            "2",
            "--access-logfile",
            "-",
        ),
        ready=r"Booting worker",
    ),
    "worker": Spec(
        (
            CELERY,
            "-A",
            "aegis",
            "worker",
            "-Q",
            "default,trading",
            "--concurrency",
            "4",
            "-l",
            "info",
            "-n",
            "default@drill",
        ),
        ready=r"ready\.",
    ),
    "execution": execution_worker("drill-a"),
    "beat": Spec((CELERY, "-A", "aegis", "beat", "-l", "info"), ready=r"beat: Starting"),
    "pricesync": Spec(
        (PY, "manage.py", "pricesync"), direct=True, ready=r"pricesync following", env=EXECUTION_ENV
    ),
    "fills": Spec((PY, "manage.py", "stream_fills"), ready=r"streaming fill notices"),
    "listener": Spec((PY, "manage.py", "listen_intents"), direct=True, ready=r"listening on"),
}
PROCESS_SET = ("web", "worker", "execution", "beat", "pricesync", "fills", "listener")


@dataclass
class Proc:
    name: str
    spec: Spec
    popen: subprocess.Popen
    log: Path
    skew: str = ""

    def alive(self) -> bool:
        return self.popen.poll() is None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def trading_day(today: dt.date) -> dt.date:
    """The first regular KRX session on or after `today` that opens at 09:00."""
    from market import calendar as market_calendar

    day = today
    while True:
        session = market_calendar.session(day)
        if session is not None and not session.late_open:
            return day
        day += dt.timedelta(days=1)


def faketime_available() -> bool:
    """Debian's faketime, installed when missing and running as root."""
    if shutil.which("faketime"):
        return True
    if os.geteuid() != 0:
        return False
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "faketime"], env=env, capture_output=True)
    return shutil.which("faketime") is not None


# --- the services -----------------------------------------------------------------------------
@dataclass
class Services:
    """The servers with-services.sh started, and a fault proxy in front of each."""

    pooled: urllib.parse.SplitResult  # DATABASE_URL (PgBouncer when AEGIS_PGBOUNCER=1)
    direct: urllib.parse.SplitResult  # DATABASE_DIRECT_URL
    redis: urllib.parse.SplitResult
    pooling: str
    proxies: dict[str, FaultProxy] = field(default_factory=dict)

    @classmethod
    def from_environ(cls) -> Services:
        missing = [n for n in ("DATABASE_URL", "REDIS_URL") if not os.environ.get(n)]
        if missing or not os.environ["DATABASE_URL"].startswith("postgres"):
            raise DrillError(
                "the drill needs PostgreSQL and Redis: run it with `make drill` "
                "(scripts/with-services.sh python -m drill)"
            )
        pooled = urllib.parse.urlsplit(os.environ["DATABASE_URL"])
        direct = urllib.parse.urlsplit(
            os.environ.get("DATABASE_DIRECT_URL") or os.environ["DATABASE_URL"]
        )
        # A Redis database of the drill's own, flushed before each scenario: a test run that
        # starts the drill (tests/drill) keeps its own keys in database 0.
        redis_url = urllib.parse.urlsplit(os.environ["REDIS_URL"])._replace(path=f"/{REDIS_DB}")
        return cls(
            pooled=pooled,
            direct=direct,
            redis=redis_url,
            pooling=os.environ.get("DATABASE_POOLING", ""),
        )

    def start_proxies(self) -> None:
        for name, url in (("redis", self.redis), ("pg", self.direct), ("pgpool", self.pooled)):
            if name == "pgpool" and url.port == self.direct.port:
                self.proxies[name] = self.proxies["pg"]
                continue
            self.proxies[name] = FaultProxy(url.hostname, url.port, name=name).start()

    def stop_proxies(self) -> None:
        for proxy in set(self.proxies.values()):
            proxy.stop()

    def url(self, which: str, *, proxied: bool = True, db: str = DB_NAME) -> str:
        url = {"redis": self.redis, "pg": self.direct, "pgpool": self.pooled}[which]
        if proxied:
            url = url._replace(
                netloc=url.netloc.replace(
                    f"{url.hostname}:{url.port}", f"127.0.0.1:{self.proxies[which].port}"
                )
            )
        if which != "redis":
            url = url._replace(path="/" + db)
        return urllib.parse.urlunsplit(url)

    def admin(self, *statements: str) -> None:
        """Statements on the maintenance database, straight to PostgreSQL (autocommit)."""
        import psycopg

        with psycopg.connect(self.url("pg", proxied=False, db="postgres"), autocommit=True) as conn:
            for sql in statements:
                conn.execute(sql)

    def redis_flush(self) -> None:
        import redis

        redis.Redis.from_url(self.url("redis", proxied=False)).flushdb()


# --- the cluster --------------------------------------------------------------------------------
class Cluster:
    """One scenario's cluster: a fresh database and simulator, and the processes."""

    def __init__(
        self,
        services: Services,
        *,
        logs: Path,
        flavour: str = "real",
        clock_start: dt.datetime,
        clock_origin: float,
        symbols: dict[str, int],
        rps: int | None = None,
        env: dict | None = None,
    ) -> None:
        self.services = services
        self.logs = logs
        self.flavour = flavour
        self.clock_env = {
            "AEGIS_CLOCK_START": clock_start.isoformat(),
            "AEGIS_CLOCK_ORIGIN": repr(clock_origin),
            "AEGIS_CLOCK_SPEED": "1",
        }
        self.symbols = symbols
        self.rps = rps
        self.extra_env = dict(env or {})  # for every process and command of this cluster
        self.apps = {
            "query": (secrets.token_hex(18), secrets.token_hex(90)),
            "order": (secrets.token_hex(18), secrets.token_hex(90)),
        }
        self.procs: dict[str, Proc] = {}
        self.sim: subprocess.Popen | None = None
        self.base_url = self.ws_url = ""
        self.web_port = _free_port()
        logs.mkdir(parents=True, exist_ok=True)

    # --- environment --------------------------------------------------------------------------
    def env(self, *, direct: bool = False, extra: dict | None = None) -> dict[str, str]:
        s = self.services
        # Not the drill's own Django settings: its process seeds with AEGIS_AUTO_SUBMIT=0, and
        # a cluster that inherited it would send every order from the sweep alone; the suite
        # turns the claim's market-hours check off (AEGIS_MARKET_HOURS=0), the cluster keeps it.
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("KIS_", "AEGIS_CLOCK_", "DATABASE_"))
            and k not in ("AEGIS_AUTO_SUBMIT", "AEGIS_MARKET_HOURS")
        }
        env.update(self.clock_env)
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": "aegis.settings",
                "AEGIS_ENV": "development",
                "PYTHONUNBUFFERED": "1",
                "LOG_LEVEL": "INFO",
                "DATABASE_URL": s.url("pg" if direct else "pgpool"),
                "DATABASE_DIRECT_URL": s.url("pg"),
                "DATABASE_POOLING": "" if direct else s.pooling,
                "REDIS_URL": s.url("redis"),
                "KIS_ENV": "simulator",
                "KIS_FLAVOUR": self.flavour,
                "KIS_BASE_URL": self.base_url,
                "KIS_WS_URL": self.ws_url,
                "KIS_ACCOUNT": f"{ACCOUNT_CANO}-{ACCOUNT_PRDT}",
                "KIS_HTS_ID": HTS_ID,
                "KIS_QUERY_APP_KEY": self.apps["query"][0],
                "KIS_QUERY_APP_SECRET": self.apps["query"][1],
                "KIS_ORDER_APP_KEY": self.apps["order"][0],
                "KIS_ORDER_APP_SECRET": self.apps["order"][1],
            }
        )
        env.update(self.extra_env)
        env.update(extra or {})
        return env

    # --- the simulator ------------------------------------------------------------------------
    def simulator_start(self) -> None:
        args = [
            PY,
            "-m",
            "kis_simulator",
            "--port",
            "0",
            "--ws-port",
            "0",
            "--flavour",
            self.flavour,
            "--tick-ms",
            "500",
            "--seed",
            "7",
        ]
        if self.rps is not None:
            args += ["--rps", str(self.rps)]
        for key, secret in self.apps.values():
            args += ["--app", f"{key}:{secret}"]
        args += ["--account", f"{ACCOUNT_CANO}-{ACCOUNT_PRDT}:{CASH}:{HTS_ID}"]
        for pdno, price in self.symbols.items():
            args += ["--symbol", f"{pdno}:{price}"]
        log = open(self.logs / "simulator.log", "wb")
        self.sim = subprocess.Popen(
            args,
            cwd=ROOT,
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            start_new_session=True,
        )
        line = _read_line(self.sim.stdout, 60)
        if not line.startswith("KIS simulator ready: "):
            raise DrillError(
                f"the simulator did not start ({line!r}); see {self.logs / 'simulator.log'}"
            )
        self.base_url, self.ws_url = line.split()[-2:]

    # --- processes ----------------------------------------------------------------------------
    def start(
        self, name: str, *, spec: Spec | None = None, skew: str = "", wait: bool = True
    ) -> Proc:
        """Start process `name` (SPECS, or `spec`); `skew` ("+3s", "-30s") runs it under
        faketime with its clock that far off."""
        spec = spec or SPECS[name]
        argv = [a.format(web_port=self.web_port) for a in spec.argv]
        extra = dict(spec.env)
        if skew:
            if not shutil.which("faketime"):
                raise FaketimeMissing("faketime is not installed")
            argv = ["faketime", "-f", skew, *argv]
            extra["DONT_FAKE_MONOTONIC"] = "1"
        log = self.logs / f"{name}.log"
        out = open(log, "ab")
        started = time.strftime("%H:%M:%S")
        out.write(f"\n=== start {started} {' '.join(argv[:6])} skew={skew or 0}\n".encode())
        out.flush()
        popen = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=self.env(direct=spec.direct, extra=extra),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        proc = Proc(name=name, spec=spec, popen=popen, log=log, skew=skew)
        self.procs[name] = proc
        if wait:
            self.wait_ready(proc)
        return proc

    def wait_ready(self, proc: Proc, timeout: float = READY_TIMEOUT_S) -> None:
        if proc.spec.ready is None:
            return
        pattern = re.compile(proc.spec.ready)
        offset = _last_start(proc.log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = proc.log.read_bytes()[offset:].decode("utf-8", "replace")
            if pattern.search(text):
                return
            if not proc.alive():
                raise DrillError(
                    f"{proc.name} exited with {proc.popen.returncode} before it "
                    f"was ready; the end of its log:\n{text[-2000:]}"
                )
            time.sleep(0.2)
        raise DrillError(f"{proc.name} not ready within {timeout:.0f} s (see {proc.log})")

    def start_all(self, names=PROCESS_SET, *, skews: dict[str, str] | None = None) -> None:
        skews = skews or {}
        for name in names:
            self.start(name, skew=skews.get(name, ""), wait=False)
        for name in names:
            self.wait_ready(self.procs[name])

    def kill9(self, name: str) -> None:
        proc = self.procs[name]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.popen.pid, signal.SIGKILL)
        proc.popen.wait(10)

    def stop_one(self, name: str) -> None:
        """SIGTERM, as a deploy or a host shutdown stops it (SIGKILL after 30 s)."""
        proc = self.procs[name]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.popen.pid, signal.SIGTERM)
        try:
            proc.popen.wait(30)
        except subprocess.TimeoutExpired:
            self.kill9(name)

    def restart(self, name: str) -> Proc:
        old = self.procs[name]
        return self.start(name, spec=old.spec, skew=old.skew)

    def stop(self) -> None:
        """Every process, then the simulator: SIGTERM to each group, SIGKILL after 15 s."""
        procs = [p.popen for p in self.procs.values()] + ([self.sim] if self.sim else [])
        for popen in procs:
            if popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(popen.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for popen in procs:
            try:
                popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(popen.pid, signal.SIGKILL)
                popen.wait(10)
        self.procs.clear()
        self.sim = None

    def run_once(self, *argv: str, timeout: float = 120) -> str:
        """A one-shot command (manage.py ...) against the cluster; its output."""
        done = subprocess.run(
            [PY, "manage.py", *argv],
            cwd=ROOT,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        with open(self.logs / "commands.log", "a") as log:
            log.write(
                f"=== manage.py {' '.join(argv)}: exit {done.returncode}\n{done.stdout}"
                f"{done.stderr[-4000:]}\n"
            )
        if done.returncode != 0:
            raise DrillError(f"manage.py {' '.join(argv)} failed:\n{done.stderr[-2000:]}")
        return done.stdout


def _last_start(log: Path) -> int:
    data = log.read_bytes()
    return max(0, data.rfind(b"\n=== start "))


def _read_line(stream, timeout: float) -> str:
    with selectors.DefaultSelector() as sel:
        sel.register(stream, selectors.EVENT_READ)
        if not sel.select(timeout):
            return ""
        return stream.readline().strip()
