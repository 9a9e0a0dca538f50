"""core.rows.bound_cursor, the hot statements' cursor: parameters travel apart from the text;
on a direct connection PostgreSQL keeps a statement run often prepared (pricesync and the
execution worker as deployed), through PgBouncer's transaction pooling never, as a pooled server
connection could not carry it, not even when DATABASE_POOLING was left unset.
"""

import pytest

from tests.support import ROOT, child_database_url, direct_database_env, django_child

STATEMENT = "SELECT %(n)s::int + %(more)s::int, %(text)s::text"
CHILD = f"""
import json, django
django.setup()
from django.db import connection
from core.rows import bound_cursor
answers = []
for n in range(8):
    with bound_cursor() as cursor:
        cursor.execute({STATEMENT!r}, {{"n": n, "more": 40, "text": "it's; --"}})
        answers.append(list(cursor.fetchone()))
with connection.cursor() as cursor:
    cursor.execute("SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s",
                   ["SELECT $1::int + $2::int%"])
    prepared = cursor.fetchone()[0]
print(json.dumps({{"answers": answers, "prepared": prepared,
                  "threshold": connection.settings_dict["OPTIONS"].get("prepare_threshold")}}))
"""


def run_child(env: dict, *, behind: tuple[str, ...] = (), stderr: list | None = None) -> dict:
    """CHILD in a process of its own with `env`, its command after `behind` (a wrapper)."""
    return django_child(CHILD, env, behind=behind, stderr=stderr)


EXPECTED = [[n + 40, "it's; --"] for n in range(8)]


@pytest.mark.django_db
def test_a_direct_connection_prepares_a_statement_run_often():
    seen = run_child(direct_database_env())
    assert seen["answers"] == EXPECTED
    assert seen["threshold"] == 5
    assert seen["prepared"] == 1  # prepared once, after its fifth run, and reused


@pytest.mark.django_db
def test_a_pooled_connection_never_prepares():
    seen = run_child({"DATABASE_URL": child_database_url(), "DATABASE_POOLING": "pgbouncer"})
    assert seen["answers"] == EXPECTED
    assert seen["threshold"] is None
    assert seen["prepared"] == 0


def test_a_pooler_left_unsaid_turns_prepared_statements_off_and_says_so():
    """DATABASE_URL through PgBouncer without DATABASE_POOLING=pgbouncer: a statement prepared
    on one pooled server connection would make another client's fail at random. The
    connection finds the pooler (its process id is PgBouncer's, not the server's), turns
    prepared statements off and logs the mistake. The child runs behind a PgBouncer of its own
    (scripts/with-services.sh), whatever this suite's DATABASE_URL goes through."""
    stderr = []
    services = {"AEGIS_PGBOUNCER": "1"}
    seen = run_child(
        services,
        behind=(
            str(ROOT / "scripts" / "with-services.sh"),
            "env",
            "DATABASE_POOLING=",
            "LOG_LEVEL=ERROR",
        ),
        stderr=stderr,
    )
    assert seen["answers"] == EXPECTED
    assert seen["threshold"] is None
    assert seen["prepared"] == 0
    assert "DATABASE_POOLING" in stderr[0] and "pooled_without_pooling" in stderr[0]
    assert "@" not in stderr[0]  # no URL, so no password, in the message
