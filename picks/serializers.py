"""What one pick may look like on the wire."""

import datetime as dt

from django.conf import settings
from rest_framework import serializers

from aegis import clock
from execution.models import SYMBOL_PATTERN, Side
from execution.validation import MAX_QTY

MAX_PRICE_KRW = 10_000_000  # above any KRX share price


class PickInSerializer(serializers.Serializer):
    # Ids are kept exactly as sent (no trimming): they are idempotency keys.
    source = serializers.CharField(max_length=32, trim_whitespace=False, help_text="Strategy id, e.g. 3001: the "
                                   "authenticated source's code.")
    external_id = serializers.CharField(max_length=128, trim_whitespace=False, help_text="The strategy's own id for "
                                        "the pick; (source, external_id) is idempotent.")
    symbol = serializers.RegexField(SYMBOL_PATTERN, max_length=6, min_length=6,
                                    help_text="KRX short code, e.g. 005930.")
    side = serializers.ChoiceField(choices=Side.choices, default=Side.BUY)
    qty = serializers.IntegerField(min_value=1, max_value=MAX_QTY, required=False,
                                   allow_null=True, help_text="Shares; or give budget_krw.")
    budget_krw = serializers.IntegerField(required=False, allow_null=True,
                                          help_text="KRW to spend; or give qty.")
    limit_price = serializers.IntegerField(min_value=1, max_value=MAX_PRICE_KRW, required=False,
                                           allow_null=True)
    score = serializers.DecimalField(max_digits=12, decimal_places=6, required=False,
                                     allow_null=True)
    generated_at = serializers.DateTimeField(help_text="ISO 8601 with its UTC offset.")

    def validate_budget_krw(self, value):
        low, high = settings.PICKS_BUDGET_MIN_KRW, settings.PICKS_BUDGET_MAX_KRW
        if value is not None and not low <= value <= high:
            raise serializers.ValidationError(f"Must be between {low:,} and {high:,} KRW.")
        return value

    def validate_generated_at(self, value: dt.datetime) -> dt.datetime:
        skew = dt.timedelta(seconds=settings.PICKS_MAX_CLOCK_SKEW_S)
        if value > clock.now() + skew:
            raise serializers.ValidationError("Lies in the future.")
        return value

    def validate(self, attrs):
        if (attrs.get("qty") is None) == (attrs.get("budget_krw") is None):
            raise serializers.ValidationError({"qty": ["Give exactly one of qty and budget_krw."]})
        return attrs


class IngestAnswerSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["queued"])
    ids = serializers.ListField(child=serializers.IntegerField(),
                                help_text="One per pick sent, in order (a repeat's first id).")
    duplicates = serializers.IntegerField(help_text="Picks already known, stored nothing new.")


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField(required=False)
    errors = serializers.DictField(required=False, help_text="Field errors by pick index.")
