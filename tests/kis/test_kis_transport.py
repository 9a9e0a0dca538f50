"""The KIS transport against small real servers on loopback: a kept connection is reused, one
the server closed while idle is replaced before the next request, and a failure is told apart by
whether the request can have left (ConnectFailed: it did not; ExchangeFailed: it may have)."""

import socket
import threading
import time

import pytest

from kis.transport import ConnectFailed, ExchangeFailed, Transport

ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTR_ID: T1\r\n"
    b'Content-Length: 11\r\n\r\n{"rt_cd":0}'
)


class Server:
    """Accepts connections one by one and, on each, answers `answers` requests (reading each
    whole) and then does `then`: "close" the connection, or "keep" it open. `mute` reads the
    request and closes without a word."""

    def __init__(self, *, answers: int = 1_000, then: str = "keep", mute: bool = False) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.answers, self.then, self.mute = answers, then, mute
        self.connections = 0
        self.hung_up = 0  # connections this server closed
        self.requests: list[bytes] = []
        self._kept: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve_one, args=(conn,), daemon=True).start()

    def _serve_one(self, conn: socket.socket) -> None:
        buffer = b""
        for _ in range(self.answers):
            while b"\r\n\r\n" not in buffer:
                chunk = conn.recv(65536)
                if not chunk:
                    conn.close()
                    return
                buffer += chunk
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            length = next(
                (
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ),
                0,
            )
            while len(buffer) < length:
                buffer += conn.recv(65536)
            self.requests.append(head + b"\r\n\r\n" + buffer[:length])
            buffer = buffer[length:]
            if self.mute:
                conn.close()
                return
            conn.sendall(ANSWER)
        if self.then == "close":
            conn.close()
            self.hung_up += 1
        else:
            self._kept.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self._kept:
            conn.close()


@pytest.fixture
def serve():
    servers = []

    def start(**kwargs) -> Server:
        servers.append(Server(**kwargs))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def transport(port: int) -> Transport:
    return Transport(f"http://127.0.0.1:{port}", connect_timeout_s=1.0, read_timeout_s=1.0)


def test_requests_share_one_kept_connection_and_arrive_whole(serve):
    server = serve()
    t = transport(server.port)
    answer = t.request("POST", "/uapi/order", headers={"tr_id": "T1"}, body=b'{"A": "1"}')
    assert (answer.status, answer.headers["tr_id"], answer.data) == (200, "T1", b'{"rt_cd":0}')
    t.request("GET", "/uapi/price", headers={}, params={"FID_INPUT_ISCD": "005930"})
    assert server.connections == 1
    assert server.requests[0].startswith(b"POST /uapi/order HTTP/1.1\r\n")
    assert server.requests[0].endswith(b'\r\n\r\n{"A": "1"}')
    assert server.requests[1].startswith(b"GET /uapi/price?FID_INPUT_ISCD=005930 HTTP/1.1\r\n")


def test_a_connection_the_server_closed_while_idle_is_replaced_not_failed(serve):
    server = serve(answers=1, then="close")  # one answer per connection, then it hangs up
    t = transport(server.port)
    for n in range(1, 4):
        assert t.request("POST", "/uapi/order", headers={}, body=b"{}").status == 200
        deadline = time.monotonic() + 10
        while server.hung_up < n:  # the server has closed it before the next request
            assert time.monotonic() < deadline
            time.sleep(0.01)
    assert server.connections == 3


def test_each_thread_has_its_own_connection(serve):
    server = serve()
    t = transport(server.port)
    t.request("GET", "/a", headers={})
    other = threading.Thread(target=lambda: t.request("GET", "/b", headers={}))
    other.start()
    other.join(10)
    t.request("GET", "/c", headers={})
    assert server.connections == 2 and len(server.requests) == 3


def test_nobody_listening_is_connect_failed_nothing_sent():
    with socket.socket() as probe:  # a port just freed: nothing listens on it
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ConnectFailed):
        transport(port).request("POST", "/uapi/order", headers={}, body=b"{}")


def test_a_request_read_and_never_answered_is_exchange_failed(serve):
    server = serve(mute=True)  # reads the request, hangs up without an answer
    with pytest.raises(ExchangeFailed):
        transport(server.port).request("POST", "/uapi/order", headers={}, body=b"{}")
    assert len(server.requests) == 1  # it did arrive: the caller must not take it for unsent


def test_no_answer_within_the_read_timeout_is_exchange_failed(serve):
    server = serve(answers=0)  # accepts and keeps the connection, reads nothing, says nothing
    t = Transport(f"http://127.0.0.1:{server.port}", connect_timeout_s=1.0, read_timeout_s=0.2)
    with pytest.raises(ExchangeFailed, match="TimeoutError|timeout"):
        t.request("POST", "/uapi/order", headers={}, body=b"{}")


def test_a_base_url_that_is_not_http_is_refused():
    with pytest.raises(ValueError, match="http"):
        Transport("ftp://kis.example", connect_timeout_s=1, read_timeout_s=1)


def test_a_connection_numbered_above_1023_is_kept_like_any_other(serve):
    """A busy process's sockets get high numbers; the check of a kept connection must not take
    them for closed (select() cannot watch them, poll() can)."""
    import os
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2048:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    filler = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        server = serve()
        t = transport(server.port)
        for _ in range(3):
            t.request("GET", "/a", headers={})
        assert t._local.conn.sock.fileno() > 1023
        assert server.connections == 1
    finally:
        for fd in filler:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
