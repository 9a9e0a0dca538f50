"""The sender's database connection after a send that failed on a database error
(execution/sender.py): a statement that failed on a live connection (a lock timeout) leaves the
connection as it is for the next send; a connection that is gone is closed, so the next send
reconnects. Either way the intent goes to the execute task."""

import psycopg
import pytest
from django.db import OperationalError, connection, transaction

from execution import sender
from execution.models import TradingState
from tests.support import child_database_url

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def handed(monkeypatch) -> list[str]:
    """The intents handed to the execute task (the task itself is the worker's business)."""
    out: list[str] = []
    monkeypatch.setattr(sender, "_hand_over", out.append)
    return out


def test_a_lock_timeout_keeps_the_connection_for_the_next_send(handed):
    TradingState.objects.get_or_create(pk=TradingState.SINGLETON_PK)
    connection.ensure_connection()
    before = connection.connection
    with psycopg.connect(child_database_url()) as holder:  # holds the row in a transaction
        holder.execute(
            f"SELECT 1 FROM {TradingState._meta.db_table} WHERE id = %s FOR UPDATE",
            [TradingState.SINGLETON_PK],
        )

        def send():
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '100ms'")
                TradingState.objects.select_for_update().get(pk=TradingState.SINGLETON_PK)

        sender._sending("intent-1", send)
    assert handed == ["intent-1"]
    assert connection.connection is before and not before.closed
    assert TradingState.objects.filter(pk=TradingState.SINGLETON_PK).exists()  # it serves


def test_a_connection_gone_is_closed_and_the_next_send_reconnects(handed):
    connection.ensure_connection()
    before = connection.connection

    def send():
        before.close()  # as the server's going away leaves it
        raise OperationalError("server closed the connection unexpectedly")

    sender._sending("intent-2", send)
    assert handed == ["intent-2"]
    assert connection.connection is None
    TradingState.objects.exists()  # the next statement
    assert connection.connection is not None and connection.connection is not before
