"""Pure decisions for notification dispatch: config, quiet hours, channels, cost, and what to do next
given the send claims already recorded. No I/O; table-tested in tests/unit/test_notifications_plan.py.

Configuration lives in the org's `config_json` under `"notifications"`, with per-branch overrides
under `"notifications" → "branches" → <branch id>` (the seed's branches have no config column):

    {"notifications": {"timezone": "Asia/Kolkata", "quiet_hours": {"start": "21:00", "end": "09:00"},
                       "preferred_channel": "whatsapp", "fallback_to_sms": false, "rate_per_minute": 60,
                       "rate_card": {"whatsapp": "0.35", "sms": "0.25", "email": "0.05"},
                       "branches": {"brn_...": {"fallback_to_sms": true, "timezone": "Asia/Dubai"}}}}

Every key is optional; the defaults are the ones above (`quiet_hours: null` turns quiet hours off).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.clock import DEFAULT_TIMEZONE
from events.notifications import Channel

CHANNELS: tuple[Channel, ...] = get_args(Channel)
# INR per message, what StudioVault bills a studio (product defaults, not provider list prices);
# an org overrides any of them in config_json. Stored as REAL rounded half-up to 2 places (paise).
DEFAULT_RATE_CARD: dict[Channel, Decimal] = {"whatsapp": Decimal("0.35"), "sms": Decimal("0.25"),
                                             "email": Decimal("0.05")}
DEFAULT_QUIET_HOURS = ("21:00", "09:00")
IDEMPOTENT_CHANNELS: frozenset[Channel] = frozenset({"email"})  # providers that take an Idempotency-Key


class ConfigError(ValueError):
    """The org's notification config cannot be used (unknown time zone, bad time, bad rate)."""


@dataclass(frozen=True)
class NotifyConfig:
    timezone: ZoneInfo
    quiet_start: time | None
    quiet_end: time | None
    preferred_channel: Channel
    fallback_to_sms: bool
    rate_per_minute: int
    rate_card: dict[Channel, Decimal]


def notify_config(org_config_json: str | None, branch_id: str, default_rate_per_minute: int = 60) -> NotifyConfig:
    """The branch's effective notification config: defaults ← org `notifications` ← branch override."""
    try:
        org = json.loads(org_config_json) if org_config_json else {}
    except ValueError as exc:
        raise ConfigError(f"organization config_json is not JSON: {exc}") from exc
    section = org.get("notifications") if isinstance(org, dict) else None
    section = section if isinstance(section, dict) else {}
    branches = section.get("branches")
    override = branches.get(branch_id, {}) if isinstance(branches, dict) else {}
    merged: dict[str, Any] = {**section, **(override if isinstance(override, dict) else {})}
    try:
        tz = ZoneInfo(str(merged.get("timezone", DEFAULT_TIMEZONE)))
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"unknown time zone {merged.get('timezone')!r}") from exc
    quiet = merged.get("quiet_hours", {"start": DEFAULT_QUIET_HOURS[0], "end": DEFAULT_QUIET_HOURS[1]})
    start, end = (_clock(quiet.get("start")), _clock(quiet.get("end"))) if isinstance(quiet, dict) else (None, None)
    preferred = str(merged.get("preferred_channel", "whatsapp"))
    if preferred not in CHANNELS:
        raise ConfigError(f"unknown preferred_channel {preferred!r}")
    return NotifyConfig(
        timezone=tz, quiet_start=start, quiet_end=end, preferred_channel=preferred,
        fallback_to_sms=bool(merged.get("fallback_to_sms", False)),
        rate_per_minute=_rate_per_minute(merged.get("rate_per_minute", default_rate_per_minute)),
        rate_card={**DEFAULT_RATE_CARD, **_rates(merged.get("rate_card"))},
    )


def _rate_per_minute(value: object) -> int:
    try:
        return max(1, int(str(value)))
    except ValueError as exc:
        raise ConfigError(f"rate_per_minute must be a whole number, got {value!r}") from exc


def _clock(value: object) -> time:
    try:
        return time.fromisoformat(str(value))
    except ValueError as exc:
        raise ConfigError(f"quiet_hours times must be HH:MM, got {value!r}") from exc


def _rates(card: object) -> dict[Channel, Decimal]:
    if not isinstance(card, dict):
        return {}
    rates: dict[Channel, Decimal] = {}
    for channel in CHANNELS:
        if channel in card:
            try:
                rate = Decimal(str(card[channel]))
            except InvalidOperation as exc:
                raise ConfigError(f"rate_card.{channel} is not a number: {card[channel]!r}") from exc
            if not rate.is_finite() or rate < 0:
                raise ConfigError(f"rate_card.{channel} must be a non-negative amount, got {card[channel]!r}")
            rates[channel] = rate
    return rates


def quiet_until(now: datetime, cfg: NotifyConfig) -> datetime | None:
    """When `now` falls inside the branch's quiet hours (its local time), the end of the window; else None.
    A window with start > end wraps midnight (21:00 to 09:00)."""
    start, end = cfg.quiet_start, cfg.quiet_end
    if start is None or end is None or start == end:
        return None
    local = now.astimezone(cfg.timezone)
    t = local.time().replace(tzinfo=None)
    today = local.date()
    if start < end:
        return _at(today, end, cfg.timezone) if start <= t < end else None
    if t >= start:
        return _at(today + timedelta(days=1), end, cfg.timezone)
    if t < end:
        return _at(today, end, cfg.timezone)
    return None


def _at(day: date, clock: time, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, clock, tzinfo=tz)


def cost_of(channel: Channel, cfg: NotifyConfig) -> float:
    """The rate-card price of one message, rounded half-up to paise, as the REAL the seed stores."""
    return float(cfg.rate_card[channel].quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def channel_chain(requested: Channel | None, cfg: NotifyConfig) -> tuple[Channel, ...]:
    """The channels to try, in order: the requested (or preferred) one, then SMS after WhatsApp when the
    branch allows the fallback."""
    first = requested or cfg.preferred_channel
    if first == "whatsapp" and cfg.fallback_to_sms:
        return ("whatsapp", "sms")
    return (first,)


# --- what to do next, given the recorded claims ---------------------------------------------------

@dataclass(frozen=True)
class Claim:
    channel: Channel
    status: str  # sending | sent | unknown | retry | failed
    version: int
    provider_message_id: str | None = None
    last_error: str | None = None


@dataclass(frozen=True)
class Send:
    """Claim `channel` (insert, or update `existing` at its version) and send."""

    channel: Channel
    existing: Claim | None


@dataclass(frozen=True)
class Record:
    """A send on `channel` happened (or probably did): record it, never send again."""

    channel: Channel
    claim: Claim
    unknown: bool  # found 'sending' for a provider without idempotency keys


@dataclass(frozen=True)
class GiveUp:
    """Every channel failed permanently: dead-letter with an audit row."""


Step = Send | Record | GiveUp


def is_replay(chain: tuple[Channel, ...], claims: dict[Channel, Claim]) -> bool:
    """Every channel's claim is 'failed': the event was dead-lettered and an operator replayed it after a
    fix. (A normal retry always has a channel untried, in flight or 'retry'.)"""
    return all(ch in claims and claims[ch].status == "failed" for ch in chain)


def next_step(chain: tuple[Channel, ...], claims: dict[Channel, Claim], failed_now: frozenset[Channel],
              replay: bool) -> Step:
    """The state machine behind "a retry after a recorded send never sends again"."""
    for ch in chain:
        claim = claims.get(ch)
        if claim is None or ch in failed_now:
            continue
        if claim.status in ("sent", "unknown"):
            return Record(ch, claim, unknown=claim.status == "unknown")
        if claim.status == "sending":
            if ch in IDEMPOTENT_CHANNELS:
                return Send(ch, claim)  # re-send with the same idempotency key
            return Record(ch, claim, unknown=True)
    for ch in chain:
        if ch in failed_now:
            continue
        claim = claims.get(ch)
        if claim is None or claim.status == "retry" or (claim.status == "failed" and replay):
            return Send(ch, claim)
    return GiveUp()
