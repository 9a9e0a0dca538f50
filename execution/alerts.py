"""Alerts a person will see: recorded once in PostgreSQL (the admin's alert history), with one
row in the notifications' outbox per channel (execution/notify/), in the same transaction. Once
it commits, the raising process delivers them from a background thread, so a slow or failing
channel never holds up trading; a channel that fails is tried again by beat's deliverer until it
answers, and each channel's outcome is kept on the alert.

Channels, from the environment (execution/notify/channels.py sends on them):
  AEGIS_ALERT_SLACK_WEBHOOK_URL   Slack incoming webhook: {"text": …}
  AEGIS_ALERT_EMAIL_TO            comma-separated addresses, through Django's mail (EMAIL_*)
  AEGIS_ALERT_SMS_WEBHOOK_URL     an SMS gateway's webhook: {"to": [...], "text": …}, critical
  AEGIS_ALERT_SMS_TO              alerts only; comma-separated numbers
  AEGIS_NOTIFY_TELEGRAM_BOT_TOKEN a Telegram bot, and the chat it writes to
  AEGIS_NOTIFY_TELEGRAM_CHAT_ID
Webhook URLs and tokens carry secrets: they never appear in logs or on the alert, only the
channel's name.
"""

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from django.db import DatabaseError, IntegrityError, connection, transaction
from django.utils.translation import gettext, gettext_noop, pgettext_lazy

from core import clock, metrics

from .models import Alert
from .notify import channels, deliver, outbox

logger = logging.getLogger("aegis.alerts")

Severity = Alert.Severity
# By severity as stored (a Severity is its str value).
_LEVEL: dict[str, int] = {
    Severity.INFO: logging.INFO,
    Severity.WARNING: logging.WARNING,
    Severity.CRITICAL: logging.CRITICAL,
}
_outbox = ThreadPoolExecutor(max_workers=1, thread_name_prefix="alerts")


# The severity as an alert's first line says it: "[Aegis CRITICAL]".
_HEAD_SEVERITY: dict[str, Any] = {
    Severity.INFO: pgettext_lazy("alert header", "INFO"),
    Severity.WARNING: pgettext_lazy("alert header", "WARNING"),
    Severity.CRITICAL: pgettext_lazy("alert header", "CRITICAL"),
}


def _text(alert: Alert) -> str:
    """The alert as its channels carry it: a first line (an e-mail's subject) that says how
    grave it is, what kind, about what and its new state, then its message; in the language of
    the process (or of the request) that raises it."""
    if alert.subject and alert.state:
        head = gettext("[Aegis %(severity)s] %(kind)s %(subject)s: %(state)s")
    elif alert.subject:
        head = gettext("[Aegis %(severity)s] %(kind)s %(subject)s")
    elif alert.state:
        head = gettext("[Aegis %(severity)s] %(kind)s: %(state)s")
    else:
        head = gettext("[Aegis %(severity)s] %(kind)s")
    values = {
        "severity": _HEAD_SEVERITY.get(alert.severity, alert.severity),
        "kind": alert.get_kind_display(),
        "subject": alert.subject,
        "state": alert.state,
    }
    return f"{head % values}\n{alert.message}"


def alert_channels(severity: str) -> tuple[str, ...]:
    """The configured channels an alert of `severity` goes to: every one, SMS only when
    critical."""
    return tuple(
        name
        for name in channels.configured()
        if name != channels.SMS or severity == Severity.CRITICAL
    )


def _deliver(alert_id: int, names: tuple[str, ...]) -> None:
    try:
        deliver.alert_deliver(alert_id, names)
    except Exception as exc:  # noqa: BLE001 - beat's deliverer sends what is left
        logger.error("alerts.delivery_deferred alert_id=%s error=%s", alert_id, type(exc).__name__)
    finally:
        connection.close()  # this thread's own connection: alerts are rare


def _send_unrecorded(alert: Alert, names: tuple[str, ...]) -> None:
    """An alert the database could not record, sent to each channel once, as it stands."""
    message = channels.Message.of(_text(alert))
    for name in names:
        try:
            channels.send(name, message)
        except channels.ChannelError as exc:
            logger.error(
                "alerts.delivery_failed key=%s channel=%s error=%s", alert.key, name, exc.detail
            )


def alert_raise(
    *, kind: str, severity: str, message: str, key: str, subject: str = "", state: str = ""
) -> Alert | None:
    """Record the alert named `key` and send it once its transaction commits; None, doing
    nothing, when an alert with that key was raised already (by any process). If the database
    cannot record it, it is sent anyway: a duplicate is better than silence."""
    alert = Alert(
        kind=kind,
        severity=severity,
        subject=subject[:64],
        state=state,
        message=message,
        key=key[:200],
        created_at=clock.now(),
    )
    names = alert_channels(severity)
    try:
        with transaction.atomic():
            alert.save()
            outbox.record(
                outbox.Notice(
                    kind=outbox.ALERT,
                    key=f"alert:{alert.key}",
                    text=_text(alert),
                    channels=names,
                    alert_id=alert.pk,
                )
            )
    except IntegrityError:
        return None
    except DatabaseError as exc:
        logger.error("alerts.unrecorded key=%s error=%s: sending anyway", key, type(exc).__name__)
        alert.pk = None
    metrics.ALERTS.labels(kind, severity).inc()
    logger.log(
        _LEVEL[severity],
        "alert %s %s %s: %s",
        kind,
        subject,
        state,
        message,
        extra={"alert_kind": kind, "alert_key": key},
    )
    if names:
        if alert.pk is None:
            transaction.on_commit(
                lambda: _outbox.submit(_send_unrecorded, alert, names), robust=True
            )
        else:
            pk = alert.pk
            transaction.on_commit(lambda: _outbox.submit(_deliver, pk, names), robust=True)
    return alert


def flush(timeout: float = 30.0) -> None:
    """Wait until every alert raised so far was delivered (tests, and before a process exits)."""
    done: Future = _outbox.submit(lambda: None)
    done.result(timeout=timeout)


# By the breaker's new state: the alert's severity and its message (translated when raised).
_BREAKER = {
    "open": (
        Severity.CRITICAL,
        gettext_noop(
            "%(name)s: %(old)s → %(new)s. KIS calls keep failing: the circuit is open. Nothing "
            "is sent to KIS on this key; intents wait in place and go out in order once it "
            "closes."
        ),
    ),
    "half-open": (
        Severity.WARNING,
        gettext_noop("%(name)s: %(old)s → %(new)s. Trying KIS again with one call."),
    ),
    "closed": (
        Severity.INFO,
        gettext_noop(
            "%(name)s: %(old)s → %(new)s. KIS answers again: the circuit is closed; waiting "
            "intents go out."
        ),
    ),
}


def breaker_transition(name: str, old: str, new: str, opened_at: int | None) -> None:
    """A KIS circuit breaker changed state (kis/breaker.py). Every process
    that notices the change reports it; the outage's moment (when the circuit last opened, kept
    in Redis) makes the key, so a change is alerted once however many processes see it."""
    severity, text = _BREAKER.get(
        new, (Severity.WARNING, gettext_noop("%(name)s: %(old)s → %(new)s. State %(new)s."))
    )
    episode = opened_at if opened_at is not None else int(clock.now().timestamp())
    alert_raise(
        kind=Alert.Kind.BREAKER,
        severity=severity,
        subject=name,
        state=new,
        message=gettext(text) % {"name": name, "old": old or "?", "new": new},
        key=f"breaker:{name}:{new}:{episode}",
    )


def credentials_refused(*, app: str, use: str, msg_cd: str) -> None:
    """KIS refused a token it had just issued for the app key fingerprinted `app` (the client
    replaced a refused one, and the new one was refused too): nothing goes to KIS on that key.
    Alerted once an hour per app key, however many calls and processes meet it."""
    hour = clock.now().strftime("%Y%m%d%H")
    alert_raise(
        kind=Alert.Kind.CREDENTIALS,
        severity=Severity.CRITICAL,
        subject=f"kis-{use}",
        message=gettext(
            "KIS refuses the tokens of app key %(app)s (%(msg_cd)s), a freshly issued one too: "
            "nothing reaches KIS on this key. Orders wait unsent and go out once it accepts "
            "tokens again. Check the app key and secret in the environment and the app's "
            "standing with KIS."
        )
        % {"app": app, "msg_cd": msg_cd},
        key=f"credentials:{app}:{hour}",
    )


def stream_outage(*, stream: str, state: str, detail: str, since: float, fallback: str) -> None:
    """A KIS WebSocket stream (kis/ws.py) has had no working connection for a
    while ("down"; it keeps reconnecting with backoff), or works again ("up"). One alert each
    per outage, named by its start, however many processes report it."""
    episode = int(since)
    values = {"stream": stream, "detail": detail, "fallback": fallback}
    if state == "down":
        severity, text = (
            Severity.CRITICAL,
            gettext(
                "The KIS %(stream)s stream is down: %(detail)s. It is reconnecting with "
                "backoff; meanwhile %(fallback)s."
            )
            % values,
        )
    else:
        severity, text = (
            Severity.INFO,
            gettext("The KIS %(stream)s stream is back: %(detail)s.") % values,
        )
    alert_raise(
        kind=Alert.Kind.STREAM,
        severity=severity,
        subject=stream,
        state=state,
        message=text,
        key=f"stream:{stream}:{state}:{episode}",
    )
