"""Helpers for tests that start other processes against the test database; more by subject
in the modules of this package."""

import contextlib
import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from django.db import connection


def child_database_url(variable: str = "DATABASE_URL") -> str:
    """DATABASE_URL (or DATABASE_DIRECT_URL, straight to PostgreSQL even when DATABASE_URL goes
    through PgBouncer) pointing at the test database pytest-django created (for child
    processes)."""
    parts = urlsplit(os.environ.get(variable) or os.environ["DATABASE_URL"])
    return urlunsplit(parts._replace(path="/" + connection.settings_dict["NAME"]))


ROOT = Path(__file__).resolve().parents[2]


def django_child(
    code: str, env: dict, *, behind: tuple[str, ...] = (), stderr: list | None = None
) -> dict:
    """Python `code` in a process of its own with Django set up by it and `env` added, its
    command after `behind` (a wrapper); the JSON object its last line of output prints."""
    done = subprocess.run(
        [*behind, sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ | {"DJANGO_SETTINGS_MODULE": "aegis.settings"} | env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    if stderr is not None:
        stderr.append(done.stderr)
    return json.loads(done.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def empty_database() -> Iterator[str]:
    """A new, empty database on the test server for a process that migrates its own (the
    demo); its DATABASE_URL, straight to PostgreSQL. Dropped afterwards."""
    import psycopg

    name = f"aegis_empty_{uuid.uuid4().hex[:12]}"
    direct = os.environ.get("DATABASE_DIRECT_URL") or os.environ["DATABASE_URL"]
    with psycopg.connect(direct, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(urlsplit(direct)._replace(path="/" + name))
    finally:
        with psycopg.connect(direct, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def direct_database_env() -> dict[str, str]:
    """A child process straight to PostgreSQL, its hot statements prepared, as the execution
    worker and pricesync are deployed (docker-compose.yml)."""
    return {"DATABASE_URL": child_database_url("DATABASE_DIRECT_URL"), "DATABASE_POOLING": ""}


class WebhookReceiver:
    """A local HTTP server on loopback that keeps every JSON body POSTed to it, by path: what
    Slack's or an SMS gateway's webhook would have received."""

    def __init__(self) -> None:
        import http.server
        import json
        import threading

        self.received: list[tuple[str, dict]] = []
        received, lock = self.received, threading.Lock()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - the http.server API
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with lock:
                    received.append((self.path, json.loads(body)))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def bodies(self, path: str) -> list[dict]:
        return [body for p, body in list(self.received) if p == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class SmtpReceiver:
    """A local SMTP server on loopback (aiosmtpd) that keeps every message it is sent."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.messages: list[tuple[list[str], str]] = []
        messages = self.messages

        class Handler:
            async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd
                messages.append(
                    (list(envelope.rcpt_tos), envelope.content.decode("utf-8", "replace"))
                )
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def subjects(self) -> list[str]:
        found = []
        for _, content in list(self.messages):
            for line in content.splitlines():
                if line.startswith("Subject: "):
                    found.append(line[len("Subject: ") :])
        return found

    def close(self) -> None:
        self.controller.stop()


def free_port() -> int:
    """A loopback port nothing listens on (as of now)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def at_once(fn, calls: list[tuple]) -> list:
    """`fn(*args)` for each `args` of `calls`, each in a thread of its own, all released at the
    same instant; the results in the order they came. Each thread closes its own database
    connections when done (a test database cannot be dropped while they are open)."""
    import threading

    from django.db import connections

    results, start = [], threading.Barrier(len(calls))

    def run(args: tuple) -> None:
        start.wait()
        try:
            results.append(fn(*args))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(args,)) for args in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def forget_broker_credentials() -> None:
    """Tokens and approval keys cached for the simulator before its reset are void now."""
    from django.core.cache import cache

    client = cache._cache.get_client(write=True)
    for name in client.scan_iter(match=cache.make_key("kis:*")):
        client.delete(name)


def wait_until(predicate, what: str, timeout: float = 30.0, every: float = 0.05):
    """Wait for `predicate()` to be true (its value returned); fail after `timeout` s."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(every)


def holds_for(predicate, seconds: float, what: str = "the invariant", every: float = 0.1) -> None:
    """Keep checking `predicate()` for `seconds` (a late duplicate must be caught): it must hold
    each time."""
    import time

    until = time.monotonic() + seconds
    while True:
        assert predicate(), f"{what} stopped holding"
        if time.monotonic() >= until:
            return
        time.sleep(every)


def in_session(hh: int = 10, mm: int = 0):
    """A clock running at real speed from `hh:mm` Seoul time of the next KRX trading day: for
    tests of the exit engine in real time, which decides only while the market trades."""
    import datetime as dt

    from core import clock
    from market import calendar as market_calendar

    day = clock.now_seoul().date() + dt.timedelta(days=1)
    while not market_calendar.is_trading_day(day):
        day += dt.timedelta(days=1)
    return clock.ShiftedClock(dt.datetime.combine(day, dt.time(hh, mm), clock.SEOUL))
