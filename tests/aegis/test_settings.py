"""Settings come from the environment: PostgreSQL always, an embedded default (tasks in-process,
no Redis) for a first run, and a production mode that refuses to start without its secrets and
passes Django's deployment checks.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROBE = (
    "import json, django; django.setup(); from django.conf import settings as s; "
    "print(json.dumps({'engine': s.DATABASES['default']['ENGINE'], "
    "'eager': s.CELERY_TASK_ALWAYS_EAGER, 'cache': s.CACHES['default']['BACKEND'], "
    "'tz': s.TIME_ZONE, 'use_tz': s.USE_TZ, 'debug': s.DEBUG}))"
)


def run(args, **env):
    base = {"PATH": os.environ["PATH"], "DJANGO_SETTINGS_MODULE": "aegis.settings"}
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=base | env,
        capture_output=True,
        text=True,
        timeout=120,
    )


PRODUCTION = {
    "AEGIS_ENV": "production",
    "SECRET_KEY": "k" * 20 + "-a-long-random-test-secret-that-is-not-real-0123456789",
    "DATABASE_URL": "postgres://aegis:pw@db.example:5432/aegis",
    "REDIS_URL": "redis://cache.example:6379/0",
    "ALLOWED_HOSTS": "aegis.example",
}


LOCAL = {"DATABASE_URL": "postgres://aegis@127.0.0.1:5432/aegis"}


def test_embedded_default_needs_no_redis():
    result = run(["-c", PROBE], **LOCAL)
    assert result.returncode == 0, result.stderr
    probe = json.loads(result.stdout)
    assert probe["engine"] == "django.db.backends.postgresql"
    assert probe["eager"] is True
    assert probe["cache"].endswith("LocMemCache")
    assert (probe["tz"], probe["use_tz"]) == ("UTC", True)  # as servers run


def test_production_passes_the_deployment_checks():
    result = run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], **PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    probe = json.loads(run(["-c", PROBE], **PRODUCTION).stdout)
    assert probe["debug"] is False and probe["eager"] is False


def test_production_refuses_to_start_without_its_settings():
    for missing, word in (
        ("SECRET_KEY", "SECRET_KEY"),
        ("DATABASE_URL", "DATABASE_URL"),
        ("REDIS_URL", "REDIS_URL"),
    ):
        env = {k: v for k, v in PRODUCTION.items() if k != missing}
        result = run(["-c", PROBE], **env)
        assert result.returncode != 0 and word in result.stderr, missing
    short = run(["-c", PROBE], **PRODUCTION | {"SECRET_KEY": "short"})
    assert short.returncode != 0 and "50 characters" in short.stderr
    # The secret itself never shows in the error.
    assert "short" not in short.stderr.split("ImproperlyConfigured")[-1]


def test_another_database_than_postgresql_is_refused(tmp_path):
    result = run(["-c", PROBE], DATABASE_URL=f"sqlite:///{tmp_path}/x.sqlite3")
    assert result.returncode != 0 and "must point at PostgreSQL" in result.stderr


def test_a_simulated_day_is_refused_with_a_real_broker_or_in_production():
    day = {"AEGIS_CLOCK_START": "2026-11-24T08:58:30+09:00", **LOCAL}
    for env in ({"KIS_ENV": "real"}, {"KIS_ENV": "paper"}, PRODUCTION):
        result = run(["-c", PROBE], **day | env)
        assert result.returncode != 0 and "AEGIS_CLOCK_START" in result.stderr, env
    shown = run(
        [
            "-c",
            "import django; django.setup(); from core import clock; "
            "print(clock.now_seoul().date())",
        ],
        **day,
        KIS_ENV="simulator",
    )
    assert shown.returncode == 0 and shown.stdout.strip() == "2026-11-24", shown.stderr


TIMEOUTS_PROBE = (
    "import json, django; django.setup(); from django.conf import settings as s; "
    "print(json.dumps(s.DATABASES['default']['OPTIONS'].get('options')))"
)


def test_lock_and_statement_timeouts_go_to_a_direct_connection_as_options():
    direct = {"DATABASE_URL": "postgres://aegis:pw@db.example:5432/aegis"}
    result = run(
        ["-c", TIMEOUTS_PROBE],
        **direct,
        DATABASE_LOCK_TIMEOUT_MS="2000",
        DATABASE_STATEMENT_TIMEOUT_MS="10000",
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == "-c lock_timeout=2000 -c statement_timeout=10000"
    unset = run(["-c", TIMEOUTS_PROBE], **direct)
    assert json.loads(unset.stdout) is None  # PostgreSQL's own: no limit
    pooled = run(
        ["-c", TIMEOUTS_PROBE],
        **direct,
        DATABASE_POOLING="pgbouncer",
        DATABASE_LOCK_TIMEOUT_MS="2000",
    )
    assert pooled.returncode != 0 and "ALTER ROLE" in pooled.stderr
    negative = run(["-c", TIMEOUTS_PROBE], **direct, DATABASE_STATEMENT_TIMEOUT_MS="-1")
    assert negative.returncode != 0 and "0 or more" in negative.stderr


NOTIFY_PROBE = (
    "import json, django; django.setup(); from django.conf import settings as s; "
    "print(json.dumps(s.NOTIFY['KINDS']))"
)


def test_notification_kinds_are_opted_into_per_channel_and_checked():
    telegram = {
        "AEGIS_NOTIFY_TELEGRAM_BOT_TOKEN": "123:not-a-real-token",
        "AEGIS_NOTIFY_TELEGRAM_CHAT_ID": "-100",
    }
    result = run(
        ["-c", NOTIFY_PROBE], **LOCAL, **telegram, AEGIS_NOTIFY_KINDS_TELEGRAM="fill,close"
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["telegram"] == ["fill", "close"]
    unknown = run(["-c", NOTIFY_PROBE], **LOCAL, **telegram, AEGIS_NOTIFY_KINDS_TELEGRAM="fills")
    assert unknown.returncode != 0 and "the kinds are fill, exit" in unknown.stderr
    # A channel opted into without what it needs to send.
    bare = run(["-c", NOTIFY_PROBE], **LOCAL, AEGIS_NOTIFY_KINDS_TELEGRAM="exit")
    assert bare.returncode != 0 and "AEGIS_NOTIFY_TELEGRAM_BOT_TOKEN" in bare.stderr
    slack = run(["-c", NOTIFY_PROBE], **LOCAL, AEGIS_NOTIFY_KINDS_SLACK="exit")
    assert slack.returncode != 0 and "AEGIS_ALERT_SLACK_WEBHOOK_URL" in slack.stderr


BACKLOG_PROBE = (
    "import django; django.setup(); from django.conf import settings as s; "
    "print(s.PICKS_MAX_BATCH, s.PICKS_QUEUE_MAX)"
)


def test_the_routers_backlog_holds_a_full_batch_while_another_waits():
    assert run(["-c", BACKLOG_PROBE], **LOCAL).stdout.split() == ["1000", "2000"]
    assert run(["-c", BACKLOG_PROBE], **LOCAL, AEGIS_PICKS_MAX_BATCH="50").stdout.split() == [
        "50",
        "100",
    ]
    small = run(["-c", BACKLOG_PROBE], **LOCAL, AEGIS_PICKS_QUEUE_MAX="999")
    assert small.returncode != 0 and "a full batch must fit" in small.stderr
