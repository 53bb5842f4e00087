"""Payment facts from the gateways: a capture, failure, refund or dispute recorded once against its invoice."""

from handlers.payments.handler import (
    acknowledge_ignored,
    record_capture,
    record_dispute_lost,
    record_dispute_opened,
    record_dispute_won,
    record_failed_payment,
    record_refund,
    record_refund_reversal,
)

__all__ = [
    "acknowledge_ignored",
    "record_capture",
    "record_dispute_lost",
    "record_dispute_opened",
    "record_dispute_won",
    "record_failed_payment",
    "record_refund",
    "record_refund_reversal",
]
