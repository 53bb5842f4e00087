"""Money as integers: gateways send minor units (paise), the seed stores REAL rupees rounded to 2 places.

Arithmetic happens in integers or `Decimal`, never in float sums; a REAL read back from the database
is turned into minor units once, here, rounding half up.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

# Currencies without a minor unit (ISO 4217 exponent 0): the gateways send whole units for these.
ZERO_DECIMAL = frozenset({"BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV",
                          "XAF", "XOF", "XPF"})
# Currencies with three decimals: amounts are stored to 2 places, so these are refused.
THREE_DECIMAL = frozenset({"BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"})
PAISA = Decimal("0.01")


def exponent(currency: str) -> int:
    """Digits after the decimal point in `currency`'s minor unit (2 for INR)."""
    return 0 if currency.upper() in ZERO_DECIMAL else 2


def to_minor(amount: float | int | str | Decimal, currency: str = "INR") -> int:
    """An amount in major units (a REAL column, a string, a Decimal) → integer minor units, half up."""
    scale = Decimal(10) ** exponent(currency)
    return int((Decimal(str(amount)) * scale).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def to_paise(amount: float | int | str | Decimal) -> int:
    """Rupees → integer paise, rounded half up (₹0.005 → 1 paisa)."""
    return to_minor(amount, "INR")


def to_major(minor: int, currency: str = "INR") -> float:
    """Integer minor units → the REAL the seed stores (exact to 2 places)."""
    return float(Decimal(minor).scaleb(-exponent(currency)))


def money(value: Decimal) -> Decimal:
    """Round to the paisa, half up."""
    return value.quantize(PAISA, rounding=ROUND_HALF_UP)
