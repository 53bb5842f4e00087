"""Overage billing: an org's closed period priced and invoiced once, its notifications billed once."""

from handlers.billing.handler import bill_period

__all__ = ["bill_period"]
