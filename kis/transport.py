"""KIS's REST host over kept-alive HTTP/1.1 connections: one per thread, on the standard library's
http.client.

Every order, quote and inquiry goes through here, so its own cost is on every path from a trade
or a pick to an order. On this kind of machine urllib3's pool added 0.5-0.8 ms to each call over
http.client with a kept connection, both against the KIS simulator after an idle gap (the
PoolManager 3.24 ms, http.client 2.42 ms for an order, p50); that is the whole difference
between the two, since the wire traffic is the same.

What this module must say exactly, because an order's fate depends on it, is whether a request
can have reached KIS:
- ConnectFailed: no connection could be made (refused, unreachable, timed out, TLS handshake
  failed). Nothing was sent; the call is safe to make again.
- ExchangeFailed: the connection failed after the request started to leave (a timeout waiting
  for the answer, a reset, a broken answer). KIS may have acted on it.
A kept connection that the server has closed meanwhile is noticed before it is reused (it reads
as ready with nothing to read) and replaced, as urllib3 does, so an idle gap does not turn an
order into an ExchangeFailed.
"""

from __future__ import annotations

import http.client
import os
import select
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

USER_AGENT = "aegis"


class ConnectFailed(Exception):
    """No connection to KIS could be made: the request was not sent."""


class ExchangeFailed(Exception):
    """The connection failed once the request had started to leave: KIS may have it."""


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]  # names in lower case
    data: bytes


class Transport:
    def __init__(self, base_url: str, *, connect_timeout_s: float, read_timeout_s: float) -> None:
        url = urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"KIS's base URL must be http(s)://host[:port], got {base_url!r}")
        self.https = url.scheme == "https"
        self.host = url.hostname
        self.port = url.port or (443 if self.https else 80)
        self.prefix = url.path.rstrip("/")
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self._tls = ssl.create_default_context() if self.https else None
        self._local = threading.local()

    def request(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str],
        params: dict | None = None,
        body: bytes | None = None,
        before_write: Callable[[], None] | None = None,
    ) -> Answer:
        """One request and its whole answer; ConnectFailed or ExchangeFailed as above.
        `before_write` is called once the connection is up, with nothing of the request
        written: whatever it raises goes to the caller and nothing is sent (an order's claim,
        execution/services/claim.py)."""
        conn = self._connection()
        if before_write is not None:
            before_write()
        target = self.prefix + path + (f"?{urlencode(params)}" if params else "")
        try:
            # Headers and body leave in one write (http.client joins a bytes body to them).
            conn.request(method, target, body=body, headers={"user-agent": USER_AGENT} | headers)
            response = conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self._drop()
            raise ExchangeFailed(type(exc).__name__) from None
        if response.will_close:
            self._drop()
        return Answer(
            status=response.status,
            headers={name.lower(): value for name, value in response.getheaders()},
            data=data,
        )

    def _connection(self) -> http.client.HTTPConnection:
        local, pid = self._local, os.getpid()
        conn = getattr(local, "conn", None)
        if conn is not None and local.pid != pid:
            conn = local.conn = None  # a forked child leaves its parent's socket alone
        if conn is not None and (conn.sock is None or _closed_by_peer(conn.sock)):
            self._drop()
            conn = None
        if conn is None:
            conn = local.conn = self._connect()
            local.pid = pid
        return conn

    def _connect(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection
        if self.https:
            conn = http.client.HTTPSConnection(
                self.host, self.port, context=self._tls, timeout=self.connect_timeout_s
            )
        else:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.connect_timeout_s)
        try:
            conn.connect()  # TCP, and TLS's handshake: nothing of the request has left
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.sock.settimeout(self.read_timeout_s)
        except OSError as exc:
            conn.close()
            raise ConnectFailed(type(exc).__name__) from None
        return conn

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def _closed_by_peer(sock: socket.socket) -> bool:
    """An idle kept connection that reads as ready has been closed by the server (or holds bytes
    nobody asked for): either way it is not reused."""
    try:
        ready = select.poll()  # poll, not select: a socket numbered above 1023 is fine
        ready.register(sock, select.POLLIN)
        return bool(ready.poll(0))
    except (OSError, ValueError):
        return True
