"""What a person can read in a text: whether anything is visible, and the control characters we refuse."""

from __future__ import annotations

import re

import regex

from smscredits.domain.errors import InvalidRequest

# Blank to a reader: white space, control and format characters, the default-ignorable code points (zero-width
# spaces and joiners, Hangul fillers, variation selectors) and the blank braille pattern.
_VISIBLE = regex.compile(r"[^\p{White_Space}\p{Cc}\p{Cf}\p{Default_Ignorable_Code_Point}\u2800]")
# The C0 and C1 controls but tab and line breaks: they show as nothing, and carriers drop or mangle them.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
MAX_REPORTED = 20


def has_visible(text: str) -> bool:
    return _VISIBLE.search(text) is not None


def refuse_control_characters(text: str, field: str) -> None:
    """Raise invalid_request naming the positions (0-based, in characters) of the first control characters."""
    found = [(match.start(), match.group()) for match in _CONTROL.finditer(text)][:MAX_REPORTED]
    if found:
        raise InvalidRequest(
            f"The {field} holds control characters (only tab and line breaks are allowed).",
            {
                field: "control characters",
                "positions": [position for position, _ in found],
                "characters": [f"U+{ord(character):04X}" for _, character in found],
            },
        )
