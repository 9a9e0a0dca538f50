"""One lock order (issue 23, finding 7): position → exit state, then several rows in id order,
for the ORM and the raw SQL alike. A statement that takes the exit state before the position
deadlocks against one that takes them the other way round; here, while another transaction holds
the position, the exit decision's lock must be waiting for the position with the exit state still
free. Real PostgreSQL connections."""

import threading
from decimal import Decimal

import psycopg
import pytest
from django.db import connection, connections, transaction

from execution.models import Position
from tests.support import child_database_url, wait_until
from tests.support.ledger import open_position
from trading import services as trading_services
from trading.models import ExitProfile, PositionExitState

pytestmark = pytest.mark.django_db(transaction=True)


def _waiting_on_a_lock(pid: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pid])
        row = cursor.fetchone()
    return bool(row) and row[0] == "Lock"


def _exit_state_free(position_id: int) -> bool:
    with psycopg.connect(child_database_url("DATABASE_DIRECT_URL"), autocommit=False) as other:
        try:
            other.execute(
                f"SELECT 1 FROM {PositionExitState._meta.db_table} "
                "WHERE position_id = %s FOR UPDATE NOWAIT",
                [position_id],
            )
            return True
        except psycopg.errors.LockNotAvailable:
            return False


def test_the_exit_decision_takes_the_position_before_its_exit_state(new_symbol):
    """As the at-once statement does (_AT_ONCE_GO: FOR UPDATE OF p, s)."""
    position = open_position(new_symbol(), 10)
    profile = ExitProfile.objects.create(name=f"lock-{position.pk}", stop_loss_pct=Decimal(3))
    PositionExitState.objects.create(position=position, profile=profile, peak_qty=10)
    pid: list[int] = []
    done = threading.Event()

    def exit_path() -> None:
        try:
            with transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_backend_pid()")
                    pid.append(cursor.fetchone()[0])
                trading_services._lock(position.pk)
        finally:
            connections.close_all()
            done.set()

    with psycopg.connect(child_database_url("DATABASE_DIRECT_URL")) as holder:
        holder.execute(
            f"SELECT 1 FROM {Position._meta.db_table} WHERE id = %s FOR UPDATE", [position.pk]
        )
        thread = threading.Thread(target=exit_path)
        thread.start()
        wait_until(lambda: pid and _waiting_on_a_lock(pid[0]), "the exit path to wait")
        assert _exit_state_free(position.pk), "the exit state was locked before the position"
        holder.rollback()
    assert done.wait(30)
    thread.join()
