"""Package size: bytes of each function's `sam build` output plus the core layer's, unzipped."""

from __future__ import annotations

from pathlib import Path

from bench.common import ROOT, Row, Section, announce, mib

BUILD = ROOT / ".aws-sam" / "build"
LAYER = "CoreLayer"
SEND = "SendFunction"
LIMITS = {SEND: 70 << 20}
DEFAULT_LIMIT = 50 << 20


CLOSING = """\
- **Package size.** The layer is mostly `phonenumbers` (~23 MB, nearly all geocoder, carrier and time-zone
  data we never read): `phonenumberslite`, the same API without that data, saves ~15 MB for every
  function. The send and status functions carry the whole Twilio SDK (~24 MB, every Twilio product) and its
  aiohttp stack (~12 MB) for one POST and one signature check: a small requests-based client for
  Messages.json and a HMAC-SHA1 check of our own would drop it. The send function also carries Stripe
  (~17 MB) only for auto-recharge: charging from the Stripe function (an event from send) or a
  requests-based PaymentIntent call would drop it. Each of these is a change to the adapters alone."""


def tree_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def run(quick: bool) -> Section:
    announce("package size")
    section = Section(
        "Package size",
        "Bytes of every regular file under `.aws-sam/build/<Function>` plus `.aws-sam/build/CoreLayer` "
        "after `make sam-build` (unzipped: what Lambda's 250 MB limit counts). The baseline is the layer "
        "alone, which every function carries.",
    )
    section.closing = CLOSING
    if not (BUILD / LAYER).is_dir():
        section.notes.append("package size: no `.aws-sam/build` — run `make sam-build` first.")
        return section
    layer = tree_bytes(BUILD / LAYER)
    functions = sorted(p.name for p in BUILD.iterdir() if p.is_dir() and p.name != LAYER)
    for name in functions:
        total = layer + tree_bytes(BUILD / name)
        limit = LIMITS.get(name, DEFAULT_LIMIT)
        print(f"{name}: {mib(total)} (layer {mib(layer)})")
        section.rows.append(
            Row(
                f"package: {name}",
                mib(total),
                f"layer {mib(layer)}",
                f"{total / limit:.0%} of limit",
                f"≤ {limit >> 20} MB",
                total <= limit,
            )
        )
        if total > limit:
            section.notes.append(
                f"package of {name}: {mib(total)} against ≤ {limit >> 20} MB ({mib(total - limit)} over)."
            )
    return section
