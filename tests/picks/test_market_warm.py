"""A worker that routes picks warms the market's threads when it starts (picks.doorbell.
market_lanes_warm): each thread's own direct connection has the account statement prepared
and planned once for all, so that the first picks after a start do not plan it again and
again. In a process of its own on a direct connection, as the execution worker is deployed."""

import pytest

from tests.support import child_database_url, direct_database_env, django_child

CHILD = """
import json, threading, django
django.setup()
from django.db import connection
from market import reads
from picks import doorbell

warmed = doorbell.market_lanes_warm()
together = threading.Barrier(reads.market_lanes._max_workers, timeout=10)

def seen():
    together.wait()  # one on each thread
    with connection.cursor() as cursor:
        cursor.execute("SELECT generic_plans, custom_plans FROM pg_prepared_statements "
                       "WHERE statement LIKE '%%WITH held AS%%'")
        return [list(row) for row in cursor.fetchall()]

calls = [reads.market_lanes.submit(seen) for _ in range(reads.market_lanes._max_workers)]
print(json.dumps({"warmed": warmed, "threads": [call.result(timeout=60) for call in calls]}))
"""


def run_child(env: dict) -> dict:
    return django_child(CHILD, env)


@pytest.mark.django_db
def test_each_market_thread_has_the_account_statement_prepared_and_planned_once():
    seen = run_child(direct_database_env())
    assert seen["warmed"] == 8
    for statements in seen["threads"]:
        # One prepared statement on each thread's connection, past its first plans made for
        # each run's parameters: PostgreSQL runs it on one generic plan from then on.
        [[generic, custom]] = statements
        assert custom == 5 and generic >= 1, statements


@pytest.mark.django_db
def test_through_pgbouncer_nothing_is_warmed():
    seen = run_child({"DATABASE_URL": child_database_url(), "DATABASE_POOLING": "pgbouncer"})
    assert seen["warmed"] == 0
