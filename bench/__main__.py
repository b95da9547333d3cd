"""`python -m bench` (`make bench`): run every benchmark, print one table, write docs/performance.md."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from bench import batches, coldstart, contention, dynamo_cost, latency, refresh_scale, segments, size
from bench.common import CORE_LAYER, ROOT, Row, Section, machine

BENCHMARKS: dict[str, Callable[[bool], Section]] = {
    "coldstart": coldstart.run,
    "size": size.run,
    "dynamo": dynamo_cost.run,
    "latency": latency.run,
    "refresh": refresh_scale.run,
    "segments": segments.run,
    "contention": contention.run,
    "batches": batches.run,
}
DOC = ROOT / "docs" / "performance.md"
# Everything after this line of docs/performance.md is written by hand (the choices behind the figures) and kept.
HAND_WRITTEN = "<!-- Written by hand below this line; `make bench` keeps it. -->"
HEADER = ("what", "measured", "baseline", "ratio / figure", "target", "met?")

SCALE = """\
## Scale of one account (PRODUCT §12)

All of an account's items share its partition key, and DynamoDB serves at most 1,000 write units per
second per partition key value. Every item written in a transaction costs 2 write units per started KB,
and the balance, hold and ledger items are each under 1 KB: a send today is two transactions of three
items (reserve: balance, hold, ledger entry; post: balance, hold, ledger entry) and the hold's dispatch mark
(one UpdateItem of the hold item before Twilio is asked: 1 write unit), **13 write units on one partition**,
so one account can never exceed about **76 sends per second**, conflicts aside (the mark touches only the
hold item, so it adds no balance conflict). Conflicts
bring it far lower: a transaction holds its items from its prepare to its commit, which the DynamoDB
stand-in takes as its whole latency (p50 about 25 ms); then one balance item takes at most about 40
transactions a second, and two per send cap one account near 20 sends per second; retries bring it to
about 10. The post's `message.sent` event (2 write units) lands in an outbox shard's own partition, not
the account's. Locally, through the service, one account's sends do not grow with clients (the
single-send rows above).
docs/design/concurrency.md measures the designs that lift this (bench/contention.py) and says which was
chosen. Twilio's per-sender rate (1 message per second for a long code, up to about 100 for a short code or
a toll-free number with high throughput) is the other limit.
"""


def _met(value: bool | None) -> str:
    return "—" if value is None else ("yes" if value else "**no**")


def table(rows: list[Row], markdown: bool) -> str:
    cells = [HEADER, *((r.what, r.measured, r.baseline, r.figure, r.target, _met(r.met)) for r in rows)]
    if markdown:
        lines = ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]
        lines.insert(1, "|" + " --- |" * len(HEADER))
        return "\n".join(lines)
    widths = [max(len(row[i].replace("**", "")) for row in cells) for i in range(len(HEADER))]
    return "\n".join(
        "  ".join(c.replace("**", "").ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells
    )


def document(sections: list[Section], quick: bool, seconds: float) -> str:
    rows = [row for section in sections for row in section.rows]
    missed = [note for section in sections for note in section.notes]
    parts = [
        "# Performance",
        "",
        "Written by `make bench` (`python -m bench`) down to the hand-written sections at the end, which it "
        "keeps. These are measurements, not tests: each figure stands beside a baseline measured in the same "
        "run on the same machine, and the targets are those of issues 8, 14 and 19.",
        "",
        f"- machine: {machine()}",
        f"- run: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {'--quick' if quick else 'full'}, {seconds:.0f} s",
        "- network: none beyond 127.0.0.1 (moto, local mode and the Twilio/Stripe stand-ins or fakes)",
        "",
        table(rows, markdown=True),
        "",
        "## Missed targets",
        "",
        *([f"- {note}" for note in missed] or ["None in this run."]),
        "",
    ]
    closings = [section.closing for section in sections if section.notes and section.closing]
    if closings:
        parts += ["What would close them:", "", *closings, ""]
    parts += [
        "## Method",
        "",
    ]
    for section in sections:
        parts += [f"### {section.title}", "", section.method, ""]
    parts.append(SCALE)
    return "\n".join(parts)


def kept(doc: Path) -> str:
    """The hand-written end of the existing document, marker included; empty when there is none."""
    _, marker, tail = (doc.read_text() if doc.exists() else "").partition(HAND_WRITTEN)
    return f"\n{marker}{tail}" if marker else ""


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes and fewer repeats (a short run)")
    parser.add_argument("--only", choices=list(BENCHMARKS), action="append", help="run only these")
    parser.add_argument("--no-write", action="store_true", help="print the table, leave docs/ alone")
    args = parser.parse_args(argv)
    if str(CORE_LAYER) not in sys.path:
        sys.path.append(str(CORE_LAYER))
    started = time.perf_counter()
    sections = [BENCHMARKS[name](args.quick) for name in args.only or BENCHMARKS]
    seconds = time.perf_counter() - started
    rows = [row for section in sections for row in section.rows]
    print(f"\n# Benchmarks — {machine()} — {seconds:.0f} s\n")
    print(table(rows, markdown=False))
    if not args.no_write and not args.only:
        DOC.write_text(document(sections, args.quick, seconds) + kept(DOC))
        print(f"\nwritten: {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
