"""The price, plan and legacy-rate tables: data, not branches. Adding a region is one row."""

from __future__ import annotations

from datetime import date
from types import MappingProxyType
from typing import NamedTuple


class Region(NamedTuple):
    code: str  # ISO 3166 alpha-2, as phonenumbers reports it
    label: str  # what people see ("UK" for GB)
    name: str
    pack_price_cents: int  # USD cents for one pack of PACK_CREDITS credits
    # The phonenumbers number types (lower case) an SMS can reach here; the others are refused before billing.
    sms_number_types: tuple[str, ...]


PACK_CREDITS = 100

# Mobiles everywhere (and numbers whose plan cannot tell mobile from fixed, as in the US). Landlines in the UK
# and the US, and US toll-free numbers, because Twilio attempts delivery to them (to AU and NZ landlines it
# refuses with error 21635). Never premium-rate, shared-cost, personal, pager, VoIP or UAN numbers.
REGIONS: MappingProxyType[str, Region] = MappingProxyType(
    {
        "AU": Region("AU", "AU", "Australia", 620, ("mobile", "fixed_line_or_mobile")),
        "US": Region("US", "US", "USA", 100, ("mobile", "fixed_line_or_mobile", "fixed_line", "toll_free")),
        "GB": Region("GB", "UK", "United Kingdom", 630, ("mobile", "fixed_line_or_mobile", "fixed_line")),
        "NZ": Region("NZ", "NZ", "New Zealand", 1260, ("mobile", "fixed_line_or_mobile")),
    }
)

# Input aliases: people say "UK", the numbering plan says "GB".
REGION_ALIASES: MappingProxyType[str, str] = MappingProxyType({"UK": "GB"})
# What a request may name a region by: each code, followed by its aliases (the schemas' patterns).
REGION_INPUTS: tuple[str, ...] = tuple(
    name
    for code in REGIONS
    for name in (code, *(alias for alias, to in REGION_ALIASES.items() if to == code))
)

PLANS: MappingProxyType[str, int] = MappingProxyType({"starter": 50, "essentials": 75, "growth": 100})

# Accounts created before this date use the legacy credit model until migrated (docs/product.md §6).
LEGACY_CUTOFF = date(2025, 9, 1)

# Legacy model: credits per message by recipient region, whatever its length (our rule; configurable).
DEFAULT_LEGACY_CREDITS_PER_MESSAGE: MappingProxyType[str, int] = MappingProxyType(
    {code: 1 for code in REGIONS}
)

# Migration: purchased credits of the home region granted per legacy credit, as a ratio (numerator, denominator).
DEFAULT_MIGRATION_RATIO = (1, 1)

MAX_PACKS_PER_PURCHASE = 100


def normalise_region(code: str) -> str | None:
    """The canonical region code for `code` (case-insensitive, "UK" → "GB"), or None if unsupported."""
    upper = code.strip().upper()
    upper = REGION_ALIASES.get(upper, upper)
    return upper if upper in REGIONS else None


def pack_price_cents(region: str, quantity: int) -> int:
    return REGIONS[region].pack_price_cents * quantity
