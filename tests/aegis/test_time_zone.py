"""Servers run in UTC: the process's local time is UTC whatever the market's zone, log lines
carry their zone, and the admin still shows Seoul time."""

import datetime as dt
import logging
import os
import time
from zoneinfo import ZoneInfo

import pytest
from django.urls import reverse
from django.utils.module_loading import import_string

from execution.models import Alert


def test_the_process_runs_in_utc():
    # Django sets the process's TZ from settings.TIME_ZONE: local time must not be Seoul's, or
    # a `.date()` of a naive time would pass here and fail on a server. CI's second pass sets
    # AEGIS_TIME_ZONE=Asia/Seoul on purpose (test_settings checks the default).
    zone = os.environ.get("AEGIS_TIME_ZONE", "UTC")
    at = 1_796_601_600
    offset = ZoneInfo(zone).utcoffset(dt.datetime.fromtimestamp(at)).total_seconds()
    assert time.localtime(at).tm_gmtoff == offset


@pytest.mark.parametrize("handler_format", ["plain", "json"])
def test_log_lines_carry_their_zone(settings, handler_format):
    spec = dict(settings.LOGGING["formatters"][handler_format])
    factory = import_string(spec.pop("()"))
    formatter = factory(**({"fmt": spec["format"]} if "format" in spec else spec))
    record = logging.LogRecord("aegis.test", logging.INFO, __file__, 1, "hello", None, None)
    record.created = dt.datetime(2026, 12, 7, 0, 2, 11, 406_000, tzinfo=dt.UTC).timestamp()
    record.msecs = 406.0
    assert "2026-12-07T00:02:11.406+00:00" in formatter.format(record)


@pytest.mark.django_db
def test_the_admin_shows_seoul_time_to_the_second(admin_client):
    midnight_utc = dt.datetime(2026, 12, 7, 0, 0, 7, tzinfo=dt.UTC)  # 09:00:07 in Seoul
    Alert.objects.create(
        kind=Alert.Kind.PRICES,
        severity=Alert.Severity.WARNING,
        message="prices",
        key="tz-test",
        created_at=midnight_utc,
    )
    page = admin_client.get(reverse("admin:execution_alert_changelist")).content.decode()
    assert "2026-12-07 09:00:07" in page and "00:00:07" not in page
