"""The Stripe stand-in's pay pages: the Checkout page with its test-card choice, and what it answers once paid."""

from __future__ import annotations

import html
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from werkzeug.wrappers import Response

from local.stripe_cards import CARDS, spaced


def checkout_page(
    session: Mapping[str, Any],
    lines: list[dict[str, Any]],
    *,
    action: str,
    preselected: str,
    saves_card: bool,
) -> Response:
    """The page of an open session: its lines and total, a test card to pay with, Pay and Cancel."""
    rows = "".join(
        f"<tr><td>{html.escape(line['description'])}</td><td>{line['quantity']}</td>"
        f"<td>{usd(line['price']['unit_amount'])}</td><td>{usd(line['amount_total'])}</td></tr>"
        for line in lines
    )
    options = "".join(
        f'<option value="{card.number}"{" selected" if card.number == preselected else ""}>'
        f"{spaced(card.number)}: {html.escape(card.behaviour)}</option>"
        for card in CARDS.values()
    )
    note = "This card is saved for auto-recharge." if saves_card else "This card is not saved."
    cancel = html.escape(str(session.get("cancel_url") or ""))
    body = f"""<table>
<thead><tr><th>Item</th><th>Quantity</th><th>Unit price</th><th>Amount</th></tr></thead>
<tbody>{rows}</tbody>
</table>
<p class="total">Total: {usd(session["amount_total"])} USD</p>
<form method="post" action="{html.escape(action)}">
<label for="card">Test card</label>
<select id="card" name="card">{options}</select>
<p class="note">{note} Local stand-in: no real card is charged.</p>
<button type="submit">Pay</button>
</form>
<p><a href="{cancel}">Cancel and go back</a></p>"""
    return page("Pay for your SMS credits", body)


def setup_page(session: Mapping[str, Any], *, action: str, preselected: str) -> Response:
    """The page of an open setup session: a test card to put on file for auto-recharge, nothing charged."""
    options = "".join(
        f'<option value="{card.number}"{" selected" if card.number == preselected else ""}>'
        f"{spaced(card.number)}: {html.escape(card.behaviour)}</option>"
        for card in CARDS.values()
    )
    cancel = html.escape(str(session.get("cancel_url") or ""))
    body = f"""<p>Save a card for auto-recharge. Nothing is charged now.</p>
<form method="post" action="{html.escape(action)}">
<label for="card">Test card</label>
<select id="card" name="card">{options}</select>
<p class="note">Local stand-in: no real card is saved.</p>
<button type="submit">Save card</button>
</form>
<p><a href="{cancel}">Cancel and go back</a></p>"""
    return page("Save a card for auto-recharge", body)


def receipt_page(charge: Mapping[str, Any]) -> Response:
    """A paid charge's receipt, as Stripe's receipt_url shows one: what was paid, when, with which card."""
    paid_at = datetime.fromtimestamp(int(charge["created"]), UTC).strftime("%d %B %Y, %H:%M UTC")
    card = (charge.get("payment_method_details") or {}).get("card") or {}
    rows = [
        ("Amount paid", f"{usd(int(charge['amount']))} {str(charge['currency']).upper()}"),
        ("Date paid", paid_at),
        ("Payment method", f"Visa ending in {card.get('last4', '????')}"),
        ("For", str(charge.get("description") or "SMS credits")),
        ("Receipt for charge", str(charge["id"])),
    ]
    if charge.get("disputed"):
        rows.append(("Status", "Disputed"))
    table = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return page("Receipt", f"<table>{table}</table>")


def receipt_not_found() -> Response:
    return page("Receipt not found", "<p>No paid charge has this receipt.</p>", 404)


def already_paid(session: Mapping[str, Any]) -> Response:
    back = html.escape(success_url(session))
    return page(
        "Already paid",
        f'<p>This checkout is already paid.</p><p><a href="{back}">Back to the dashboard</a></p>',
    )


def not_found() -> Response:
    return page("Checkout not found", "<p>This checkout session does not exist.</p>", 404)


def unknown_card() -> Response:
    return page("Unknown test card", "<p>Choose one of the stand-in's test cards.</p>", 400)


def success_url(session: Mapping[str, Any]) -> str:
    return str(session["success_url"]).replace("{CHECKOUT_SESSION_ID}", str(session["id"]))


def usd(cents: int) -> str:
    return f"${cents // 100}.{cents % 100:02d}"


PAGE_STYLE = """body{font:16px/1.5 system-ui,sans-serif;max-width:34rem;margin:2rem auto;padding:0 1rem;color:#1a1a1a}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.4rem;border-bottom:1px solid #ddd}
.total{font-size:1.25rem;font-weight:600}label{display:block;font-weight:600;margin-top:1rem}
select{font-size:1rem;padding:.4rem;width:100%}.note{color:#555;font-size:.9rem}
button{font-size:1.1rem;padding:.6rem 2.5rem;margin-top:.5rem;background:#635bff;color:#fff;border:0;border-radius:6px}
.banner{background:#fff4d6;padding:.4rem .8rem;border-radius:4px;font-size:.9rem}"""


def page(title: str, body: str, status: int = 200) -> Response:
    document = f"""<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title><style>{PAGE_STYLE}</style></head>
<body>
<p class="banner">Stripe stand-in (local mode, test mode only)</p>
<h1>{html.escape(title)}</h1>
{body}
</body>
</html>
"""
    return Response(document, status, content_type="text/html; charset=utf-8")
