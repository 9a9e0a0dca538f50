"""Log lines stamped with their zone: an ISO 8601 time in UTC with its offset
(2026-12-07T00:02:11.406+00:00), whatever the process's time zone, so lines from hosts and
processes compare without guessing."""

import datetime as dt
import logging

from pythonjsonlogger.json import JsonFormatter


def stamp(record: logging.LogRecord) -> str:
    return dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds")


class ZonedFormatter(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return stamp(record)


class ZonedJsonFormatter(JsonFormatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return stamp(record)
