"""The simulator as a child process on loopback, and a client for its /_sim/ control API: what
the demo and the benchmarks start and drive."""

import http.client
import json
import signal
import socket
import subprocess
import sys
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
READY = "KIS simulator ready: "


class SimulatorNotStarted(RuntimeError):
    pass


def simulator_start(
    *args: str, cwd: Path = ROOT, env: dict | None = None
) -> tuple[subprocess.Popen, str, str]:
    """`python -m kis_simulator --port 0 --ws-port 0 <args>`; returns the process and its REST
    and WebSocket base URLs once it is ready. Raises SimulatorNotStarted (the process stopped)
    when it does not come up."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "kis_simulator", "--port", "0", "--ws-port", "0", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None  # stdout=PIPE
    line = proc.stdout.readline().strip()
    if not line.startswith(READY):
        proc.kill()
        proc.wait()
        raise SimulatorNotStarted(f"the simulator did not start: {line!r}")
    base_url, ws_url = line.split()[-2:]
    return proc, base_url, ws_url


def simulator_stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Control:
    """The simulator's /_sim/ API over one keep-alive connection (not shared between threads)."""

    def __init__(self, base_url: str) -> None:
        url = urllib.parse.urlsplit(base_url)
        self.host, self.port = url.hostname or "127.0.0.1", url.port
        self.conn: http.client.HTTPConnection | None = None

    def post(self, path: str, payload: dict) -> dict:
        return self.call("POST", path, payload)

    def call(self, method: str, path: str, payload: dict | None = None) -> dict:
        body = json.dumps(payload).encode() if payload is not None else None
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
                self.conn.connect()
                self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = self.conn
            try:
                conn.request(method, path, body, {"Content-Type": "application/json"})
                response = conn.getresponse()
                data = json.loads(response.read() or b"{}")
            except (OSError, http.client.HTTPException):
                conn.close()
                self.conn = None
                if attempt == 2:
                    raise
                continue
            if response.status != 200 or not data.get("ok", True):
                raise RuntimeError(f"simulator {method} {path}: {response.status} {data}")
            return data
        raise AssertionError("unreachable: the last attempt returns or raises")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
