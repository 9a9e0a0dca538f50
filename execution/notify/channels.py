"""The channels a person hears Aegis on, shared by the alerts (execution/alerts.py) and the
trader's notifications (this package): a Slack incoming webhook, e-mail through Django's mail,
an SMS gateway's webhook and a Telegram bot. One message per call: pacing, batching and retries
are the deliverer's (deliver.py).

Webhook URLs and bot tokens are secrets. A failed send is reported as an HTTP status or the
type of the error met (ChannelError.detail), never with the URL or its cause's text, which
would carry it; nothing here logs.
"""

import json
from dataclasses import dataclass

import urllib3
from django.conf import settings
from django.core.mail import send_mail

SLACK, EMAIL, SMS, TELEGRAM = "slack", "email", "sms", "telegram"
CHANNELS = (SLACK, EMAIL, SMS, TELEGRAM)
# The most characters one message carries on each: Slack's advice for a message's text,
# Telegram's limit, what the alerts always cut an SMS to; e-mail has none worth keeping to.
MAX_CHARS = {SLACK: 3900, EMAIL: 100_000, SMS: 300, TELEGRAM: 4096}

# A send never waits longer than this for its channel: the deliverer holds its claim meanwhile.
SEND_TIMEOUT_S = 5.0
_http = urllib3.PoolManager(
    num_pools=4, retries=False, timeout=urllib3.Timeout(total=SEND_TIMEOUT_S)
)


class ChannelError(Exception):
    """A send that failed: `detail` says how (an HTTP status, an error's type), with no secret
    in it; `retry_after`, seconds the channel asked to be left alone (Telegram's 429)."""

    def __init__(self, detail: str, *, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.detail = detail[:200]
        self.retry_after = retry_after


@dataclass(frozen=True)
class Message:
    """What one send carries: `text` for the webhooks and Telegram; an e-mail's `subject` and
    `body`."""

    text: str
    subject: str
    body: str

    @classmethod
    def of(cls, text: str, subject: str = "") -> "Message":
        """A message whose e-mail subject is `subject`, or else its first line, the rest its
        body (all of it when it has one line)."""
        first, _, rest = text.partition("\n")
        return cls(text=text, subject=(subject or first)[:200], body=rest.strip() or text)


def configured() -> tuple[str, ...]:
    """The channels the environment gives what they need to send, in CHANNELS' order."""
    alerts, notify = settings.ALERTS, settings.NOTIFY
    ready = {
        SLACK: bool(alerts["SLACK_WEBHOOK_URL"]),
        EMAIL: bool(alerts["EMAIL_TO"]),
        SMS: bool(alerts["SMS_WEBHOOK_URL"] and alerts["SMS_TO"]),
        TELEGRAM: bool(notify["TELEGRAM_BOT_TOKEN"] and notify["TELEGRAM_CHAT_ID"]),
    }
    return tuple(name for name in CHANNELS if ready[name])


def send(channel: str, message: Message) -> None:
    """Send `message` on `channel`; ChannelError when it did not go."""
    text = clip(message.text, MAX_CHARS[channel])
    if channel == SLACK:
        _post_json(settings.ALERTS["SLACK_WEBHOOK_URL"], {"text": text})
    elif channel == SMS:
        _post_json(
            settings.ALERTS["SMS_WEBHOOK_URL"], {"to": settings.ALERTS["SMS_TO"], "text": text}
        )
    elif channel == TELEGRAM:
        notify = settings.NOTIFY
        # The Bot API's sendMessage; the token is part of the path.
        _post_json(
            f"{notify['TELEGRAM_API_URL']}/bot{notify['TELEGRAM_BOT_TOKEN']}/sendMessage",
            {
                "chat_id": notify["TELEGRAM_CHAT_ID"],
                "text": text,
                "disable_web_page_preview": True,
            },
        )
    elif channel == EMAIL:
        try:
            send_mail(
                message.subject,
                message.body,
                None,
                settings.ALERTS["EMAIL_TO"],
                fail_silently=False,
            )
        except Exception as exc:  # noqa: BLE001 - SMTP's, the socket's, the backend's own
            raise ChannelError(type(exc).__name__) from None
    else:
        raise ChannelError(f"no channel {channel!r}")


def clip(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, an ellipsis marking the cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _post_json(url: str, payload: dict) -> None:
    try:
        response = _http.request(
            "POST",
            url,
            body=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json"},
        )
    except Exception as exc:  # noqa: BLE001 - urllib3's errors name the URL: their type only
        raise ChannelError(type(exc).__name__) from None
    if response.status >= 300:
        raise ChannelError(f"HTTP {response.status}", retry_after=_retry_after(response))


def _retry_after(response) -> float | None:
    """The wait a refusal asks for: Telegram's parameters.retry_after, or Retry-After."""
    try:
        return float(json.loads(response.data)["parameters"]["retry_after"])
    except (ValueError, KeyError, TypeError):
        pass
    try:
        return float(response.headers.get("Retry-After", ""))
    except ValueError:
        return None
