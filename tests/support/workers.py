"""Aegis's own processes started by tests against the KIS simulator: a real Celery worker, the
fill stream, and what waits on them."""

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.support import ROOT, child_database_url, direct_database_env, wait_until


def worker_env(sim) -> dict:
    return os.environ | {
        "DATABASE_URL": child_database_url(),
        "KIS_ENV": "simulator",
        "KIS_FLAVOUR": sim.flavour,
        "KIS_BASE_URL": sim.base_url,
        "KIS_WS_URL": sim.ws_url,
        "KIS_ACCOUNT": f"{sim.cano}-{sim.acnt_prdt_cd}",
        "KIS_HTS_ID": sim.hts_id,
        "KIS_QUERY_APP_KEY": sim.appkey,
        "KIS_QUERY_APP_SECRET": sim.appsecret,
        "DATABASE_HEALTH_CHECKS": "false",  # as the execution worker is deployed
    }


def start_worker(
    sim, log: Path, env: dict | None = None, queues: str = "execution"
) -> subprocess.Popen:
    """A real Celery worker on `queues` (the execution queue), in its own process group, straight
    to PostgreSQL as deployed (`env` on top of worker_env)."""
    already = len(log.read_text()) if log.exists() else 0  # a restart appends to the same log
    with log.open("a") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "aegis",
                "worker",
                "-Q",
                queues,
                "-c",
                "4",
                "--pool",
                "threads",
                "-l",
                "info",
                "--without-gossip",
                "--without-mingle",
                "-n",
                f"exec-{os.getpid()}-{time.monotonic_ns()}@%h",
            ],
            cwd=ROOT,
            env=worker_env(sim) | direct_database_env() | (env or {}),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    wait_until(logged(proc, log, "ready.", already), "the worker ready", timeout=90)
    return proc


def logged(proc: subprocess.Popen, log: Path, text: str, since: int = 0):
    """A predicate for wait_until: `text` is in `log` after its first `since` characters; the
    log's end is shown if `proc` died first."""

    def seen() -> bool:
        assert proc.poll() is None, log.read_text()[-3000:]
        return text in log.read_text()[since:]

    return seen


def stop_worker(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def broker_orders(sim):
    return sim.book()["orders"]


@contextlib.contextmanager
def fill_stream_running(sim, log: Path, env: dict | None = None):
    """`manage.py stream_fills` against `sim` (`env` on top of worker_env), until the block ends."""
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "stream_fills"],
            cwd=ROOT,
            env=worker_env(sim) | (env or {}),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(logged(proc, log, "streaming fill notices"), "the fill stream", timeout=60)
        yield log
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
