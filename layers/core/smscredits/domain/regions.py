"""Recipient number → supported region, with the phonenumbers library."""

from __future__ import annotations

import re

from smscredits.domain.catalog import REGIONS
from smscredits.domain.errors import InvalidNumber, UnsupportedRegion

# One '+', then digits with the usual separators. phonenumbers alone would read more: '++61...', letters
# (1-800-FLOWERS), other scripts' digits, and an extension (`ext. 5`, `;ext=1`, `x5`) that it drops.
_E164_INPUT = re.compile(r"\+[0-9][0-9 ().-]*")


def parse_recipient(to: str) -> tuple[str, str]:
    """Return (E.164 number, region code) for a recipient an SMS can reach, or raise invalid_number /
    unsupported_region."""
    if not _E164_INPUT.fullmatch(to.strip()):
        raise InvalidNumber(
            "The recipient must be one phone number in E.164 form: '+', then digits; no extension.",
            {"to": "invalid"},
        )
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
    number_type = phonenumbers.PhoneNumberType.to_string(phonenumbers.number_type(parsed)).lower()
    reachable = REGIONS[region].sms_number_types
    if number_type not in reachable:
        raise InvalidNumber(
            f"An SMS cannot reach this number: it is a {number_type.replace('_', '-')} number in {region}.",
            {
                "to": "not_sms_capable",
                "region": region,
                "number_type": number_type,
                "sms_capable_types": list(reachable),
            },
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
