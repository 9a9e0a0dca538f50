"""KIS outages against the simulator's fault injection: the circuit breaker opens in every
process at once, each change of state is alerted once (counted by a local webhook and SMTP
receiver), intents made during an outage each become exactly one order after it, and the
flatten policy decides once, N minutes into a real outage, selling nothing unless told to."""

import datetime as dt
import multiprocessing
import time

import pytest

from execution import alerts, services
from execution.models import Alert, Order
from execution.tasks import sweep
from kis.errors import KisCircuitOpen
from tests.support import SmtpReceiver, WebhookReceiver, child_database_url, holds_for, wait_until
from tests.support import kis as kis_worker
from tests.support.kis import sim_dict
from tests.support.ledger import key
from tests.support.workers import broker_orders, start_worker, stop_worker

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

OPS_MAIL, OPS_PHONE = "ops@aegis.test", "+821000000000"


@pytest.fixture
def receivers(settings):
    """Slack and SMS webhooks and an SMTP server on loopback, configured for this process and,
    through `env`, for the processes it starts."""
    hooks, smtp = WebhookReceiver(), SmtpReceiver()
    settings.ALERTS = {
        "SLACK_WEBHOOK_URL": hooks.url + "/slack",
        "EMAIL_TO": [OPS_MAIL],
        "SMS_WEBHOOK_URL": hooks.url + "/sms",
        "SMS_TO": [OPS_PHONE],
    }
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", smtp.port
    env = {
        "AEGIS_ALERT_SLACK_WEBHOOK_URL": hooks.url + "/slack",
        "AEGIS_ALERT_EMAIL_TO": OPS_MAIL,
        "AEGIS_ALERT_SMS_WEBHOOK_URL": hooks.url + "/sms",
        "AEGIS_ALERT_SMS_TO": OPS_PHONE,
        "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": str(smtp.port),
        "DATABASE_URL": child_database_url(),
    }
    try:
        yield hooks, smtp, env
    finally:
        alerts.flush()
        hooks.close()
        smtp.close()


def states(subject: str) -> list[str]:
    return list(
        Alert.objects.filter(kind="BREAKER", subject=subject)
        .order_by("created_at")
        .values_list("state", flat=True)
    )


def test_failures_open_the_breaker_in_every_process_and_each_change_is_alerted_once(
    kis_sim, receivers
):
    hooks, smtp, env = receivers
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager, ctx.Pool(3) as pool:
        ready, go = manager.Barrier(4), manager.Barrier(4)  # the 3 processes and this one
        running = pool.starmap_async(
            kis_worker.breaker_calls, [(sim_dict(kis_sim), env, ready, go, 2.5)] * 3
        )
        ready.wait(timeout=60)  # every process has set Django and its client up
        kis_sim.control("/_sim/faults", {"outage_s": 2.0})  # connections dropped for 2 s
        go.wait(timeout=60)
        results = running.get(timeout=60)
    # Every process met the open circuit: after the first few failures no call reached KIS.
    assert all(r["circuit_open"] > 10 for r in results), results
    failed = sum(r["failed"] for r in results)
    assert 5 <= failed <= 5 + 3, results  # the threshold, plus calls already under way
    assert states("kis-query") == ["open"]

    # The outage is over; 5 s after the circuit opened (kept to the second), a trial call
    # closes it.
    client = kis_worker.client_for(
        sim_dict(kis_sim), 1000, retries=0, breaker_fail_max=5, breaker_reset_s=5.0
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            assert client.price("005930").price == kis_sim.price
            break
        except KisCircuitOpen:
            assert time.monotonic() < deadline, "the circuit never let a trial call through"
            time.sleep(0.2)
    alerts.flush()
    assert states("kis-query") == ["open", "half-open", "closed"]
    slack = [body["text"].splitlines()[0] for body in hooks.bodies("/slack")]
    assert sorted(slack) == sorted(
        f"[Aegis {severity}] KIS circuit breaker kis-query: {state}"
        for severity, state in [("CRITICAL", "open"), ("WARNING", "half-open"), ("INFO", "closed")]
    )
    [sms] = hooks.bodies("/sms")  # critical alerts only
    assert sms["to"] == [OPS_PHONE] and "kis-query: open" in sms["text"]
    assert sorted(smtp.subjects()) == sorted(slack)
    assert all(rcpt == [OPS_MAIL] for rcpt, _ in smtp.messages)
    assert {tuple(sorted(a.deliveries)) for a in Alert.objects.all()} <= {
        ("email", "slack"),
        ("email", "slack", "sms"),
    }


def test_intents_made_during_an_outage_each_become_one_order_after_it(kis_sim, tmp_path):
    worker = start_worker(
        kis_sim,
        tmp_path / "worker.log",
        env={"AEGIS_BREAKER_FAIL_MAX": "3", "AEGIS_BREAKER_RESET_S": "2"},
    )
    try:
        before = services.entry_intent_open(symbol="005930", qty=1, idempotency_key=key())
        wait_until(
            lambda: Order.objects.filter(intent=before, status="SUBMITTED").exists(),
            "the order before the outage",
        )
        kis_sim.control("/_sim/faults", {"outage_s": 4.0})
        during = []
        for _ in range(6):
            during.append(services.entry_intent_open(symbol="005930", qty=2, idempotency_key=key()))
            time.sleep(0.25)
        wait_until(lambda: "open" in states("kis-order"), "the order circuit to open")
        deadline = time.monotonic() + 120
        while Order.objects.filter(intent__in=during, status="SUBMITTED").count() < 6:
            assert time.monotonic() < deadline, "intents from the outage were never executed"
            sweep()  # what beat does every 5 s
            time.sleep(1)
        for intent in [before, *during]:
            assert Order.objects.filter(intent=intent).count() == 1
        # One broker order per intent, and it stays so: a late duplicate would show here.
        holds_for(lambda: len(broker_orders(kis_sim)) == 7, 3.0, "one broker order per intent")
        wait_until(lambda: states("kis-order")[-1:] == ["closed"], "the circuit to close")
    finally:
        stop_worker(worker)


def test_a_real_outage_triggers_the_flatten_policy_once_after_n_minutes_and_sells_nothing(kis_sim):
    from core import clock
    from execution.models import FlattenPolicy, OrderIntent
    from execution.services.flatten import flatten_policy_check
    from kis.errors import KisError
    from tests.support.ledger import open_position

    FlattenPolicy.current()
    FlattenPolicy.objects.filter(pk=1).update(enabled=True, kis_down_minutes=5)
    held = open_position("005930", 10)
    moment = clock.FixedClock(dt.datetime(2026, 11, 24, 10, 0, tzinfo=clock.SEOUL))
    client = kis_worker.client_for(
        sim_dict(kis_sim),
        1000,
        retries=0,
        read_timeout_s=1.0,
        breaker_fail_max=3,
        breaker_reset_s=600.0,
    )
    with clock.installed(moment):
        kis_sim.control("/_sim/faults", {"outage_s": 60.0})
        for _ in range(3):  # each order meets a dropped connection: the third opens the circuit
            with pytest.raises(KisError):
                client.order_cash(side="SELL", symbol="005930", qty=1, price=71_000)
        with pytest.raises(KisCircuitOpen):  # from now on KIS is not even called
            client.order_cash(side="SELL", symbol="005930", qty=1, price=71_000)
        state = client.breakers.state("order")
        assert state == "open" and states("kis-order") == ["open"]
        moment.advance(dt.timedelta(minutes=4, seconds=59))
        assert flatten_policy_check(breaker_state=state) is None
        moment.advance(dt.timedelta(seconds=1))
        decision = flatten_policy_check(breaker_state=state)
        assert decision is not None and "KIS down since 10:00:00" in decision.message
        moment.advance(dt.timedelta(minutes=5))
        assert flatten_policy_check(breaker_state=state) is None
    kis_sim.control("/_sim/faults", method="DELETE")
    assert not OrderIntent.objects.filter(intent_type="FLATTEN").exists()  # auto_flatten off
    held.refresh_from_db()
    assert (held.qty, held.reserved_qty) == (10, 0)
    assert broker_orders(kis_sim) == []  # nothing reached KIS
