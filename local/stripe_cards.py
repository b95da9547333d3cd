"""The Stripe stand-in's test cards: what an off-session charge of each does, and which account's pay page
preselects which (LOCAL_STRIPE_CARDS overrides the demo mapping)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

SUCCEEDS = "4242424242424242"
DECLINES = "4000000000000341"
AUTHENTICATES = "4000002760003184"
DISPUTED = "4000000000000259"  # Stripe's test card whose payments succeed, then are disputed as fraudulent


@dataclass(frozen=True)
class Card:
    number: str
    last4: str
    behaviour: str
    code: str | None = None  # the card_error code of an off-session charge
    decline_code: str | None = None
    message: str | None = None
    disputed: bool = False  # every payment it makes is disputed right after (charge.dispute.created)


CARDS = {
    SUCCEEDS: Card(SUCCEEDS, "4242", "off-session charges succeed"),
    DECLINES: Card(
        DECLINES,
        "0341",
        "off-session charges decline (card_declined)",
        "card_declined",
        "generic_decline",
        "Your card was declined.",
    ),
    AUTHENTICATES: Card(
        AUTHENTICATES,
        "3184",
        "off-session charges need authentication (authentication_required)",
        "authentication_required",
        "authentication_required",
        "Your card was declined. This transaction requires authentication.",
    ),
    DISPUTED: Card(DISPUTED, "0259", "payments succeed, then are disputed as fraudulent", disputed=True),
}
DEMO_CARDS = {"demo-essentials": DECLINES}


def spaced(number: str) -> str:
    return " ".join(number[i : i + 4] for i in range(0, len(number), 4))


def card_number(text: str) -> str:
    return re.sub(r"[\s-]", "", text)


def cards_from_environment(value: str | None) -> dict[str, str]:
    """The per-account cards: the demo mapping, overridden by LOCAL_STRIPE_CARDS (JSON {account: card})."""
    overrides = json.loads(value) if value else {}
    if not isinstance(overrides, dict):
        raise ValueError("LOCAL_STRIPE_CARDS must be a JSON object {account_id: test card number}")
    cards = {**DEMO_CARDS, **{str(k): card_number(str(v)) for k, v in overrides.items()}}
    unknown = {k: v for k, v in cards.items() if v not in CARDS}
    if unknown:
        raise ValueError(f"LOCAL_STRIPE_CARDS names cards the stand-in does not know: {unknown}")
    return cards


def describe(cards: Mapping[str, str]) -> str:
    """The test cards and which account's pay page preselects which, for the start-up banner."""
    lines = [f"  {spaced(card.number)}   {card.behaviour}" for card in CARDS.values()]
    lines += [f"  {account:<19} pays with {spaced(number)}" for account, number in sorted(cards.items())]
    lines.append(f"  {'any other account':<19} pays with {spaced(SUCCEEDS)}")
    return "\n".join(lines)
