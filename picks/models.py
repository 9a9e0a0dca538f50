"""Picks: what strategies want bought or sold, before the router's gates decide."""

from django.db import models
from django.db.models import Q

from execution.models import OrderIntent, Side, symbol_validator


class Pick(models.Model):
    class Status(models.TextChoices):
        NEW = "NEW", "New"
        ROUTED = "ROUTED", "Routed"
        REJECTED = "REJECTED", "Rejected"

    source = models.CharField(max_length=32, help_text="Strategy id, e.g. 3001.")
    external_id = models.CharField(max_length=128)
    symbol = models.CharField(max_length=6, validators=[symbol_validator])
    side = models.CharField(max_length=4, choices=Side.choices, default=Side.BUY)
    qty = models.BigIntegerField(null=True, blank=True)
    budget_krw = models.BigIntegerField(null=True, blank=True)
    limit_price = models.BigIntegerField(null=True, blank=True)
    score = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    generated_at = models.DateTimeField()
    received_at = models.DateTimeField()
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.NEW)
    rejected_gate = models.PositiveSmallIntegerField(null=True, blank=True)
    reject_reason = models.CharField(max_length=255, blank=True)
    routed_at = models.DateTimeField(null=True, blank=True)
    intent = models.ForeignKey(
        OrderIntent, on_delete=models.PROTECT, null=True, blank=True, related_name="picks"
    )

    class Meta:
        indexes = [models.Index(fields=["status", "received_at"], name="pick_status_received")]
        constraints = [
            models.UniqueConstraint(fields=["source", "external_id"], name="pick_source_external_id"),
            models.CheckConstraint(
                condition=(Q(qty__isnull=False, qty__gt=0, budget_krw__isnull=True))
                | (Q(qty__isnull=True, budget_krw__isnull=False, budget_krw__gt=0)),
                name="pick_qty_xor_budget",
            ),
            models.CheckConstraint(
                condition=Q(limit_price__isnull=True) | Q(limit_price__gt=0),
                name="pick_limit_price_positive",
            ),
            models.CheckConstraint(condition=Q(side__in=["BUY", "SELL"]), name="pick_side_valid"),
            models.CheckConstraint(
                condition=Q(rejected_gate__isnull=True) | Q(rejected_gate__in=[1, 2, 3]),
                name="pick_rejected_gate_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.source}/{self.external_id} {self.side} {self.symbol}"
