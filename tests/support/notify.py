"""The notifications' tests' world: a channel's server on loopback that keeps what it took and
can refuse (an HTTP status) or hold a request until released; the deliverer running as beat
runs it; the channels configured for a test."""

import contextlib
import http.server
import json
import threading
from collections.abc import Iterator

from django.db import connection

TOKEN = "123456:SECRET-bot-token"
CHAT = "-100777"


class Receiver:
    """An HTTP server on 127.0.0.1 (on `port`, or any free one): each POST's JSON body is kept
    by path in `taken` when it answers 200. `status` other than 200 refuses every request with
    it (kept in `refused`); `hold` (an Event) keeps each request waiting, `entered` set, until
    it is set."""

    def __init__(self, port: int = 0) -> None:
        self.taken: list[tuple[str, dict]] = []
        self.refused: list[str] = []
        self.status = 200
        self.hold: threading.Event | None = None
        self.entered = threading.Event()
        lock, me = threading.Lock(), self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - the http.server API
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                hold = me.hold
                if hold is not None:
                    me.entered.set()
                    hold.wait(timeout=30)
                with lock:
                    status = me.status
                    if status == 200:
                        me.taken.append((self.path, body))
                    else:
                        me.refused.append(self.path)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"ok": true}' if status == 200 else b'{"ok": false}')

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def texts(self, path: str) -> list[str]:
        """The text of each message taken on `path`, in order."""
        return [body["text"] for p, body in list(self.taken) if p == path]

    def close(self) -> None:
        if self.hold is not None:
            self.hold.set()
        self.server.shutdown()
        self.server.server_close()


TELEGRAM_PATH = f"/bot{TOKEN}/sendMessage"


def configure(settings, url: str, *, kinds: dict[str, list[str]], **notify) -> None:
    """The channels of `kinds` (channel → kinds) at `url` (Slack on /slack, SMS on /sms,
    Telegram's API there; e-mail through the settings' backend), every other channel off."""
    settings.ALERTS = {
        "SLACK_WEBHOOK_URL": url + "/slack" if "slack" in kinds else "",
        "EMAIL_TO": ["trader@aegis.test"] if "email" in kinds else [],
        "SMS_WEBHOOK_URL": url + "/sms" if "sms" in kinds else "",
        "SMS_TO": ["+821000000000"] if "sms" in kinds else [],
    }
    settings.NOTIFY = {
        "TELEGRAM_BOT_TOKEN": TOKEN if "telegram" in kinds else "",
        "TELEGRAM_CHAT_ID": CHAT if "telegram" in kinds else "",
        "TELEGRAM_API_URL": url,
        "KINDS": {name: kinds.get(name, []) for name in ("slack", "email", "sms", "telegram")},
        "INTERVAL_S": dict.fromkeys(("slack", "email", "sms", "telegram"), 0.0),
        "REFUSALS_EVERY_S": 300,
        "RETRY_S": 0.05,
        "RETRY_MAX_S": 0.2,
    } | notify


@contextlib.contextmanager
def deliverer(every_s: float = 0.02) -> Iterator[list[BaseException]]:
    """The deliverer as beat runs it (notify.deliver), every `every_s` in a thread of its own,
    until the block ends; the errors it met."""
    from execution.notify.deliver import deliver_due

    stop, errors = threading.Event(), []

    def run() -> None:
        try:
            while not stop.is_set():
                try:
                    deliver_due()
                except Exception as exc:  # noqa: BLE001 - the test reads them
                    errors.append(exc)
                stop.wait(every_s)  # beat's period; ends at once when the block does
        finally:
            connection.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield errors
    finally:
        stop.set()
        thread.join(timeout=30)
