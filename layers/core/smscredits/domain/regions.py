"""Recipient number → supported region, with the phonenumbers library."""

from __future__ import annotations

from smscredits.domain.catalog import REGIONS
from smscredits.domain.errors import InvalidNumber, UnsupportedRegion


def parse_recipient(to: str) -> tuple[str, str]:
    """Return (E.164 number, region code) for a recipient, or raise invalid_number / unsupported_region."""
    # Imported on the first number read, not with the module: most routes of the account API never read
    # one, and the import is ~0.1× of a bare boto3 import (docs/performance.md).
    import phonenumbers

    try:
        parsed = phonenumbers.parse(to, None)
    except phonenumbers.NumberParseException as exc:
        raise InvalidNumber(
            "The recipient is not a valid phone number in E.164 form.", {"to": "invalid"}
        ) from exc
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidNumber("The recipient is not a valid phone number.", {"to": "invalid"})
    region = phonenumbers.region_code_for_number(parsed)
    if region is None or region not in REGIONS:
        raise UnsupportedRegion(
            f"Sending to {region or 'this country'} is not supported.",
            {"region": region, "supported": sorted(REGIONS)},
        )
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164), region


def mask_number(number: str) -> str:
    """+61412345678 → +61******678: the country code and the last three digits, for logs and statements."""
    import phonenumbers

    digits = number.lstrip("+")
    if len(digits) <= 5:
        return "+" + "*" * len(digits)
    try:
        country = str(phonenumbers.parse(number, None).country_code)
    except phonenumbers.NumberParseException:
        country = digits[:2]
    hidden = len(digits) - len(country) - 3
    return f"+{country}{'*' * max(hidden, 0)}{digits[-3:]}"
