"""The trader's notifications: each fill, each exit decided (its rule and reason), the picks
refused at a gate (summed up once per period), and the day's close (realised P&L net of fees
and tax, trades, refusals, order latency), on Slack, e-mail, SMS and Telegram.

A transactional outbox in PostgreSQL (models.Notification). The trading path only writes rows,
one per channel that opted into the event's kind, in the event's own transaction, so an event
rolled back tells nothing: an exit's rows are part of the ledger's one statement that writes
it (outbox.cte), a fill's and a refusal's one INSERT beside them, and nothing at all is written
when no channel wants the kind, which the settings say without a query. Delivery happens
elsewhere: beat's `notify.deliver` task, every second on the default queue (deliver.py), claims
the due rows of each channel FOR UPDATE SKIP LOCKED, sends them as one message, marks them
sent, and backs off and tries again while the channel fails. `(channel, event_key)` is unique:
an event reported twice is one message.

The alerts (execution/alerts.py) take the same road, with their own rows (kind "alert") on
every configured channel (SMS: critical ones only), and the process that raises one delivers
it from its background thread at once.

Settings, from the environment (aegis/settings.py):
  AEGIS_NOTIFY_KINDS_<CHANNEL>      what the channel (SLACK, EMAIL, SMS, TELEGRAM) is sent, e.g.
                                    fill,exit,refusals,close (default: nothing)
  AEGIS_NOTIFY_TELEGRAM_BOT_TOKEN   the Telegram bot's token (a secret) and the chat it writes
  AEGIS_NOTIFY_TELEGRAM_CHAT_ID     to: POST {api}/bot{token}/sendMessage
  AEGIS_NOTIFY_TELEGRAM_API_URL     the Bot API's base URL (https://api.telegram.org)
  AEGIS_NOTIFY_INTERVAL_S_<CHANNEL> the least seconds between two messages on it (1): what
                                    comes due meanwhile goes together in the next one
  AEGIS_NOTIFY_REFUSALS_EVERY_S     refused picks are summed up once per this period (300)
  AEGIS_NOTIFY_RETRY_S,             a failed send is tried again after RETRY_S (5), doubled
  AEGIS_NOTIFY_RETRY_MAX_S          each time up to RETRY_MAX_S (300); given up after a day
Slack, e-mail and SMS are the alerts' channels (AEGIS_ALERT_SLACK_WEBHOOK_URL,
AEGIS_ALERT_EMAIL_TO with Django's EMAIL_*, AEGIS_ALERT_SMS_WEBHOOK_URL and AEGIS_ALERT_SMS_TO).
Webhook URLs and bot tokens are secrets: they never reach a log, an error, a row or a task's
arguments.
"""

from .events import exit_notice, fill_record, refusal_record
from .outbox import (
    ALERT,
    CLOSE,
    EXIT,
    FILL,
    REFUSALS,
    Notice,
    cte,
    notifications_prune,
    record,
    wants,
)
from .summary import close_record, summary_part

__all__ = [
    "ALERT",
    "CLOSE",
    "EXIT",
    "FILL",
    "REFUSALS",
    "Notice",
    "close_record",
    "cte",
    "exit_notice",
    "fill_record",
    "notifications_prune",
    "record",
    "refusal_record",
    "summary_part",
    "wants",
]
