"""What one pick may look like on the wire, and what the ingest API answers."""

import datetime as dt
from collections.abc import Mapping

from django.conf import settings
from django.core.validators import RegexValidator
from django.utils import timezone
from rest_framework import serializers

from core import clock
from execution.models import Side
from execution.validation import MAX_QTY
from market.models import symbol_validator

from .models import SOURCE_CODE_PATTERN

MAX_PRICE_KRW = 10_000_000  # above any KRX share price


class AwareDateTimeField(serializers.DateTimeField):
    """ISO 8601 with its UTC offset: a time without one is ambiguous between machines."""

    def enforce_timezone(self, value: dt.datetime) -> dt.datetime:
        if timezone.is_naive(value):
            raise serializers.ValidationError(
                "Give the UTC offset, e.g. 2026-11-24T09:00:01+09:00 or …Z.", code="naive"
            )
        return super().enforce_timezone(value)


class TextField(serializers.CharField):
    """A string, as the schema says: a number is refused, not taken as its text (DRF's
    CharField would store 12345 as "12345", and an id the client sent as a number would not
    be the id it reads back)."""

    default_error_messages = {"invalid": "Must be a string. / 문자열이어야 합니다."}

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class ScoreField(serializers.DecimalField):
    """DRF's DecimalField, in a class of its own so that the schema can spell out its strings
    (picks/schema.py): drf-spectacular's pattern for a decimal admits "-" and ".", which are
    not numbers."""


class PickInSerializer(serializers.Serializer):
    # Ids are kept exactly as sent (no trimming): they are idempotency keys.
    source = TextField(
        min_length=1,
        max_length=32,
        trim_whitespace=False,
        validators=[
            RegexValidator(
                SOURCE_CODE_PATTERN,
                "A source's code is 1 to 32 letters, digits, _, . or -.",
                code="invalid_source",
            )
        ],
        help_text="Strategy id, e.g. 3001: must be the authenticated source's code.",
    )
    external_id = TextField(
        min_length=1,
        max_length=128,
        trim_whitespace=False,
        help_text="The strategy's own id for the pick, 1 to 128 characters kept as sent; "
        "(source, external_id) is idempotent.",
    )
    symbol = TextField(
        min_length=6,
        max_length=6,
        trim_whitespace=False,
        validators=[symbol_validator],
        help_text="KRX short code, e.g. 005930.",
    )
    side = serializers.ChoiceField(choices=Side.choices, default=Side.BUY)
    qty = serializers.IntegerField(
        min_value=1,
        max_value=MAX_QTY,
        required=False,
        allow_null=True,
        help_text="Shares; or give budget_krw.",
    )
    budget_krw = serializers.IntegerField(
        required=False, allow_null=True, help_text="KRW to spend; or give qty."
    )
    limit_price = serializers.IntegerField(
        min_value=1,
        max_value=MAX_PRICE_KRW,
        required=False,
        allow_null=True,
        help_text="KRW; without it the router prices the entry from the last trade.",
    )
    score = ScoreField(
        max_digits=12,
        decimal_places=6,
        required=False,
        allow_null=True,
        help_text="The strategy's own score: a decimal string, at most 6 digits before the "
        "point and 6 after, e.g. 0.87.",
    )
    generated_at = AwareDateTimeField(
        help_text="When the strategy made the pick: RFC 3339 with its UTC offset, e.g. "
        "2026-11-24T09:00:01.250+09:00 or 2026-11-24T00:00:01Z, at most "
        "PICKS_MAX_CLOCK_SKEW_S (default 5 s) ahead of the server's clock."
    )

    def get_fields(self):
        # The budget's bounds are settings: read them per use, so the schema shows them too.
        fields = super().get_fields()
        fields["budget_krw"] = serializers.IntegerField(
            required=False,
            allow_null=True,
            min_value=settings.PICKS_BUDGET_MIN_KRW,
            max_value=settings.PICKS_BUDGET_MAX_KRW,
            help_text="KRW to spend; or give qty.",
        )
        return fields

    def to_internal_value(self, data):
        # A misspelt optional field (limit_prce) silently dropped would send a different
        # order than the strategy meant: refuse unknown fields.
        if isinstance(data, Mapping):
            unknown = sorted(str(key) for key in data if key not in self.fields)
            if unknown:
                raise serializers.ValidationError(
                    {key: ["Unknown field."] for key in unknown[:10]}, code="unknown"
                )
        return super().to_internal_value(data)

    def validate_generated_at(self, value: dt.datetime) -> dt.datetime:
        skew = dt.timedelta(seconds=settings.PICKS_MAX_CLOCK_SKEW_S)
        if value > clock.now() + skew:
            raise serializers.ValidationError(
                "Lies in the future (more than the allowed clock skew): check the sender's clock."
            )
        return value

    def validate(self, attrs):
        if (attrs.get("qty") is None) == (attrs.get("budget_krw") is None):
            raise serializers.ValidationError(
                {"qty": ["Give exactly one of qty and budget_krw."]}, code="qty_xor_budget"
            )
        return attrs


class IngestAnswerSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["queued"])
    ids = serializers.ListField(
        child=serializers.IntegerField(),
        help_text="One pick id per pick sent, in order; a pick already known answers the id "
        "it was first stored with.",
    )
    duplicates = serializers.IntegerField(
        help_text="Picks of the batch already known (sent before, or twice in this batch): "
        "nothing new stored for them."
    )


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField(required=False, help_text="What is wrong, for 401 to 429.")
    errors = serializers.DictField(
        required=False,
        help_text='400: field errors by pick index, e.g. {"1": {"symbol": ["…"]}}, or '
        '{"non_field_errors": [...]} when the body is not a list of picks.',
    )
