"""The trader's notifications (execution/notify/) on real PostgreSQL, delivered to servers on
loopback: one message per event on each channel that opted into its kind, none for an event
rolled back, none lost or sent twice while a channel answers 503 or refuses connections, a
burst paced and batched, and a channel that hangs never holds up the trading path."""

import datetime as dt
import logging
import re
import threading

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from core import clock
from execution import services
from execution.models import IntentType, Notification, Position
from execution.notify import deliver, events
from execution.notify.deliver import deliver_due
from execution.services import Seen, exit_open_if
from execution.services.intents import _ExitWrite
from tests.support import free_port, holds_for, wait_until
from tests.support.ledger import fill, key, open_position, submit
from tests.support.notify import CHAT, TELEGRAM_PATH, TOKEN, Receiver, configure, deliverer

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


def exit_of(position: Position, qty: int, reason: str = "9,500 ≤ 9,600 (cost 10,000 − 4%)"):
    return services.exit_intent_open(
        position_id=position.pk,
        qty=qty,
        intent_type=IntentType.EXIT_STOP_LOSS,
        idempotency_key=key(),
        reason=reason,
        limit_price=9_480,
        trigger_price=9_500,
    )


def drain() -> None:
    """The deliverer until nothing is due (channels paced at 0 s)."""
    while any(state == "sent" for state in deliver_due().values()):
        pass


def heads(texts: list[str]) -> list[str]:
    """The first line of each notice in `texts` (several notices in one message each count)."""
    return [part.partition("\n")[0] for text in texts for part in text.split("\n\n")]


def test_each_event_is_one_message_on_each_channel_that_wants_it(
    settings, receiver, mailoutbox, new_symbol
):
    configure(
        settings,
        receiver.url,
        kinds={name: ["fill", "exit"] for name in ("slack", "email", "sms", "telegram")},
    )
    symbol = new_symbol()
    position = open_position(symbol, 10, price=10_000)  # an entry and its fill
    drain()
    exit_ = exit_of(position, 10)  # decided
    drain()
    order = submit(exit_)
    done = fill(order, 10, 9_500)
    drain()
    # The same fill reported again, and the deliverer run again: nothing more.
    services.fill_apply(order_id=order.pk, broker_fill_key=done.broker_fill_key, qty=10, price=1)
    drain()

    expected = [
        f"Fill {symbol}: bought 10 at 10,000 KRW",
        f"Exit {symbol}: stop loss, selling 10",
        f"Fill {symbol}: sold 10 at 9,500 KRW",
    ]
    for path in ("/slack", "/sms", TELEGRAM_PATH):
        assert heads(receiver.texts(path)) == expected, path
    assert [m.subject for m in mailoutbox] == expected
    assert all(m.to == ["trader@aegis.test"] for m in mailoutbox)
    [*_, sold] = receiver.texts(TELEGRAM_PATH)
    # Its order's reason, and the P&L net of the fee (13 KRW) and the tax (190 KRW).
    assert "exit, stop loss: 9,500 ≤ 9,600 (cost 10,000 − 4%)" in sold
    assert "realised −5,203 KRW net of costs" in sold
    assert re.search(r"\d\d:\d\d:\d\d KST$", sold)
    assert {b["chat_id"] for p, b in receiver.taken if p == TELEGRAM_PATH} == {CHAT}
    assert set(Notification.objects.values_list("status", flat=True)) == {"SENT"}


def test_each_channel_is_sent_the_kinds_it_opted_into(settings, receiver, new_symbol):
    configure(settings, receiver.url, kinds={"slack": ["fill"], "telegram": ["exit"]})
    symbol = new_symbol()
    position = open_position(symbol, 5)
    exit_of(position, 5)
    drain()
    assert heads(receiver.texts("/slack")) == [f"Fill {symbol}: bought 5 at 10,000 KRW"]
    assert heads(receiver.texts(TELEGRAM_PATH)) == [f"Exit {symbol}: stop loss, selling 5"]
    assert sorted(Notification.objects.values_list("kind", "channel")) == [
        ("exit", "telegram"),
        ("fill", "slack"),
    ]


def test_the_exit_engines_one_statement_writes_its_notices_only_when_it_writes_the_exit(
    settings, receiver, new_symbol
):
    configure(settings, receiver.url, kinds={"telegram": ["exit"], "sms": ["exit"]})
    symbols = [new_symbol() for _ in range(7)]
    positions = [open_position(symbol, 10) for symbol in symbols]

    def seen(position: Position, qty: int) -> Seen:
        return Seen(position.pk, position.symbol, qty, qty, position.avg_price)

    # Seen otherwise than it stands: nothing written, the exit nor its notices.
    assert exit_open_if(
        seen(positions[0], 9), qty=10, intent_type="EXIT_TRAILING", idempotency_key=key()
    ) == (False, None)
    assert not Notification.objects.filter(kind="exit").exists()
    # Often enough that a direct connection runs the statement prepared.
    for position in positions:
        went, intent = exit_open_if(
            seen(position, 10),
            qty=10,
            intent_type="EXIT_TRAILING",
            idempotency_key=key(),
            reason="9,700 ≤ 9,702 (3% under the high 10,002; armed at 10,000)",
            limit_price=9_690,
        )
        assert went and intent is not None
    rows = Notification.objects.filter(kind="exit")
    assert sorted(rows.values_list("channel", flat=True)) == ["sms"] * 7 + ["telegram"] * 7
    drain()
    told = heads(receiver.texts(TELEGRAM_PATH))
    assert told == [f"Exit {symbol}: trailing stop, selling 10" for symbol in symbols]
    assert "armed at 10,000) · limit 9,690 KRW ·" in receiver.texts(TELEGRAM_PATH)[0]
    # An SMS takes 300 characters at most: as many whole exits as fit in each.
    assert sorted(heads(receiver.texts("/sms"))) == sorted(told)
    assert 7 > len(receiver.texts("/sms")) and all(len(t) <= 300 for t in receiver.texts("/sms"))


def test_no_channel_wanting_a_kind_costs_no_query_and_writes_nothing(settings, new_symbol):
    configure(settings, "http://127.0.0.1:9", kinds={"slack": ["close"]})
    position = open_position(new_symbol(), 5)
    intent = exit_of(position, 5)
    order = submit(intent)
    done = fill(order, 5, 10_000)
    position.refresh_from_db()
    with CaptureQueriesContext(connection) as queries:
        events.fill_record(order=order, fill=done, position=position)
        events.refusal_record(pick_id=1, gate="gate 1 validity", reason="stale")
        write = _ExitWrite(
            position_id=position.pk,
            symbol=position.symbol,
            qty=1,
            intent_type=IntentType.EXIT_STOP_LOSS,
            idempotency_key=key(),
        )
    assert len(queries) == 0
    assert write.notice is None and write.notice_sql == ""  # the exit's statement as it was
    assert not Notification.objects.exists()


def test_an_event_rolled_back_tells_nothing(settings, receiver, new_symbol):
    configure(settings, receiver.url, kinds={"slack": ["fill", "exit"]})
    position = open_position(new_symbol(), 10)
    Notification.objects.all().delete()
    order = submit(exit_of(position, 10))
    Notification.objects.all().delete()
    with pytest.raises(RuntimeError), transaction.atomic():
        fill(order, 10, 10_000)
        assert Notification.objects.count() == 1  # written with the fill, in its transaction
        raise RuntimeError("the fill's transaction fails")
    assert not Notification.objects.exists()
    drain()
    assert receiver.taken == []


def test_a_burst_is_batched_and_paced_one_message_per_interval(settings, receiver, new_symbol):
    configure(settings, receiver.url, kinds={"telegram": ["fill"]})
    settings.NOTIFY["INTERVAL_S"] = dict(settings.NOTIFY["INTERVAL_S"], telegram=1.0)
    at = clock.FixedClock(dt.datetime(2026, 11, 24, 1, 0, tzinfo=dt.UTC))
    with clock.installed(at):
        entry = services.entry_intent_open(
            symbol=new_symbol(), qty=50, idempotency_key=key(), limit_price=10_000
        )
        order = submit(entry)
        for _ in range(50):  # 50 fills of one share, at one instant
            fill(order, 1, 10_000)
        sent_each_second = []
        while Notification.objects.filter(status="PENDING").exists():
            for _ in range(5):  # beat's runs within the second: one message at most
                deliver_due()
            sent_each_second.append(len(receiver.texts(TELEGRAM_PATH)))
            at.advance(dt.timedelta(seconds=1))
    messages = receiver.texts(TELEGRAM_PATH)
    # One message per second, each as full as Telegram takes: 50 notices in two.
    assert sent_each_second == [1, 2]
    assert all(len(m) <= 4096 for m in messages)
    notices = [part for m in messages for part in m.split("\n\n")]
    assert len(notices) == 50
    partial = sorted(int(n) for n in re.findall(r"order (\d+) of 50 filled", "\n".join(notices)))
    assert partial == list(range(1, 50))  # and the 50th fills the order


@pytest.mark.parametrize("outage", ["503", "connection refused"])
def test_a_channel_down_then_back_loses_nothing_and_sends_nothing_twice(
    settings, new_symbol, outage, caplog
):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    configure(settings, url, kinds={"telegram": ["fill"], "slack": ["fill"]})
    server = Receiver(port=port) if outage == "503" else None
    if server is not None:
        server.status = 503
    symbol = new_symbol()
    caplog.set_level(logging.DEBUG)
    try:
        with deliverer() as errors:
            entry = services.entry_intent_open(
                symbol=symbol, qty=5, idempotency_key=key(), limit_price=10_000
            )
            order = submit(entry)
            for _ in range(5):
                fill(order, 1, 10_000)
            # The channel has failed a few times, and the fills wait.
            wait_until(
                lambda: (
                    set(
                        Notification.objects.filter(attempts__gte=3).values_list(
                            "channel", flat=True
                        )
                    )
                    == {"slack", "telegram"}
                ),
                "failed attempts on both channels",
            )
            assert not Notification.objects.filter(status="SENT").exists()
            if server is None:
                server = Receiver(port=port)  # it comes back, on the same port
            else:
                server.status = 200

            def told() -> list[str]:
                return [n for n in heads(server.texts(TELEGRAM_PATH)) if n.startswith("Fill")]

            wait_until(lambda: len(told()) >= 5, "the five fills")
            wait_until(lambda: len(heads(server.texts("/slack"))) >= 5, "the five fills on Slack")
            # Nothing comes twice, however long the deliverer goes on.
            holds_for(
                lambda: len(told()) == 5 and len(heads(server.texts("/slack"))) == 5,
                1.0,
                "one message per fill",
            )
        assert errors == []
        bodies = [m for p in (TELEGRAM_PATH, "/slack") for m in server.texts(p)]
        for n in range(1, 5):
            assert sum(f"order {n} of 5 filled" in m for m in bodies) == 2  # one per channel
        assert set(Notification.objects.values_list("status", flat=True)) == {"SENT"}
        errors_seen = set(Notification.objects.values_list("last_error", flat=True))
        assert errors_seen == {""}  # cleared once sent
    finally:
        if server is not None:
            server.close()
    # How the sends failed was said, never with the bot's token or the webhook's URL.
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "notify.send_failed" in logged
    assert TOKEN not in logged and "/slack" not in logged


def test_a_failed_send_records_how_without_secrets(settings, new_symbol):
    configure(settings, f"http://127.0.0.1:{free_port()}", kinds={"telegram": ["fill"]})
    open_position(new_symbol(), 1)
    assert deliver_due() == {"telegram": "failed"}
    [row] = Notification.objects.all()
    assert row.status == "PENDING" and row.attempts == 1 and row.next_attempt_at > row.created_at
    assert row.last_error == "NewConnectionError"
    assert TOKEN not in row.text


def test_the_trading_path_does_not_wait_for_a_channel_that_hangs(settings, receiver, new_symbol):
    configure(settings, receiver.url, kinds={"telegram": ["fill", "exit"]})
    receiver.hold = release = threading.Event()
    symbol = new_symbol()
    with deliverer():
        position = open_position(symbol, 10)  # its fill is sent: the channel holds the send
        wait_until(receiver.entered.is_set, "the deliverer's send held by the channel")
        # Meanwhile the trading path writes an exit and a fill, each committing its rows.
        order = submit(exit_of(position, 10))
        fill(order, 10, 10_000)
        assert not release.is_set() and receiver.taken == []  # the send is still held
        assert Notification.objects.filter(status="PENDING").count() == 3  # all committed
        release.set()
        wait_until(lambda: len(heads(receiver.texts(TELEGRAM_PATH))) >= 3, "all three")
        holds_for(lambda: len(heads(receiver.texts(TELEGRAM_PATH))) == 3, 0.5, "one each")
    assert heads(receiver.texts(TELEGRAM_PATH)) == [
        f"Fill {symbol}: bought 10 at 10,000 KRW",
        f"Exit {symbol}: stop loss, selling 10",
        f"Fill {symbol}: sold 10 at 10,000 KRW",
    ]


def test_one_deliverer_per_channel_at_a_time(settings, receiver, new_symbol):
    configure(settings, receiver.url, kinds={"telegram": ["fill"]})
    receiver.hold = release = threading.Event()
    open_position(new_symbol(), 1)
    first = threading.Thread(target=lambda: (deliver_due(), connection.close()))
    first.start()
    try:
        wait_until(receiver.entered.is_set, "the first deliverer's send")
        open_position(new_symbol(), 1)  # due now too
        assert deliver.channel_deliver("telegram") == deliver.Outcome("busy")
    finally:
        release.set()
        first.join(timeout=30)
    drain()
    assert len(receiver.texts(TELEGRAM_PATH)) == 2
