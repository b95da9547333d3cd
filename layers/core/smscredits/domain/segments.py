"""SMS segment counting exactly as Twilio bills it (GSM-7 / UCS-2), with optional Smart Encoding."""

import re
from collections.abc import Iterable, Iterator
from functools import cache
from typing import Any, Literal, NamedTuple

from smscredits.domain.gsm import GSM7_CHARS, GSM7_EXTENSION
from smscredits.domain.smart_encoding import SMART_ENCODING_MAP, apply_smart_encoding

Encoding = Literal["GSM-7", "UCS-2"]

# 140 octets per SMS: 160 septets or 70 UTF-16 units. A multi-part message spends 6 octets per segment
# on the concatenation header, which leaves 1072 bits: 153 septets or 67 units.
GSM7_SINGLE_SEGMENT_SEPTETS = 160
GSM7_MULTI_SEGMENT_SEPTETS = 153
UCS2_SINGLE_SEGMENT_UNITS = 70
UCS2_MULTI_SEGMENT_UNITS = 67


@cache
def _grapheme_patterns() -> tuple[Any, Any]:
    """(any grapheme, a grapheme joiner), built on the first long UCS-2 text: `regex` and these Unicode
    property classes cost ~50 ms of every cold start, and most messages never need them."""
    import regex

    # A text has a multi-code-point grapheme (other than CR LF) only if it contains one of these
    # Grapheme_Cluster_Break classes: precomposed Hangul syllables (LV, LVT) join only with L, V or T jamo,
    # and the Indic conjunct rule (GB9c) needs a linker, which is Extend.
    joiner = (
        r"[\p{GCB=Extend}\p{GCB=ZWJ}\p{GCB=SpacingMark}\p{GCB=Prepend}\p{GCB=L}\p{GCB=V}\p{GCB=T}\p{GCB=RI}]"
    )
    return regex.compile(r"\X"), regex.compile(joiner)


_ASTRAL_SPLIT = re.compile("[\U00010000-\U0010ffff]")
_GSM7_EXTENSION_SPLIT = re.compile("[" + re.escape(GSM7_EXTENSION) + "]")
_LAST_BMP = "\uffff"
_CR_LF = "\r\n"


class SegmentCount(NamedTuple):
    """How Twilio would encode and bill ``text``."""

    encoding: Encoding
    segments: int
    # Code points of ``text``.
    characters: int
    # Septets (GSM-7, escape pairs count 2) or UTF-16 code units (UCS-2).
    units: int
    # Distinct code points outside GSM-7, in order of first appearance.
    non_gsm_characters: tuple[str, ...]
    # The text that was counted: the input, or its Smart Encoding replacement.
    text: str
    # Units one segment of this message holds: 160 / 70 when it fits in one, else 153 / 67 per part.
    segment_capacity: int
    # Units in the last segment, where the next character goes (whole atoms: an escape pair, a surrogate
    # pair or a grapheme that did not fit started that segment).
    last_segment_units: int

    @property
    def last_segment_units_left(self) -> int:
        return self.segment_capacity - self.last_segment_units


def count_segments(text: str, *, smart_encoding: bool = False) -> SegmentCount:
    """Count the segments Twilio bills for ``text``; nothing is trimmed or normalised."""
    if smart_encoding:
        text = apply_smart_encoding(text)
    if GSM7_CHARS.issuperset(text):
        return _count_gsm7(text)
    return _count_ucs2(text)


def _count_gsm7(text: str) -> SegmentCount:
    # Split around extension characters: runs of 1-septet characters separated by 2-septet escape pairs.
    runs = _GSM7_EXTENSION_SPLIT.split(text)
    septets = len(text) + len(runs) - 1
    if septets <= GSM7_SINGLE_SEGMENT_SEPTETS:
        return SegmentCount("GSM-7", 1, len(text), septets, (), text, GSM7_SINGLE_SEGMENT_SEPTETS, septets)
    segments, last = _pack_runs(runs, GSM7_MULTI_SEGMENT_SEPTETS)
    return SegmentCount("GSM-7", segments, len(text), septets, (), text, GSM7_MULTI_SEGMENT_SEPTETS, last)


def _count_ucs2(text: str) -> SegmentCount:
    # Split around astral code points: runs of 1-unit characters separated by 2-unit surrogate pairs.
    runs = _ASTRAL_SPLIT.split(text)
    units = len(text) + len(runs) - 1
    if units <= UCS2_SINGLE_SEGMENT_UNITS:
        segments, capacity, last = 1, UCS2_SINGLE_SEGMENT_UNITS, units
    elif _grapheme_patterns()[1].search(text) is None:
        # Every code point is a grapheme of its own (CR LF aside, which Twilio counts as two atoms
        # anyway), so the slow grapheme split would find exactly these atoms.
        capacity = UCS2_MULTI_SEGMENT_UNITS
        segments, last = _pack_runs(runs, capacity)
    else:
        capacity = UCS2_MULTI_SEGMENT_UNITS
        segments, last = _pack(_grapheme_costs(text), capacity)
    non_gsm = tuple(char for char in dict.fromkeys(text) if char not in GSM7_CHARS)
    return SegmentCount("UCS-2", segments, len(text), units, non_gsm, text, capacity, last)


def gsm_replacement(char: str) -> str:
    """What to write instead of a character that forces UCS-2: its Smart Encoding replacement (always GSM-7),
    else nothing (an emoji or a letter with no look-alike is removed)."""
    return SMART_ENCODING_MAP.get(char, "")


def replace_non_gsm(count: SegmentCount) -> str:
    """The counted text with every character outside GSM-7 replaced by its ``gsm_replacement``."""
    return count.text.translate({ord(char): gsm_replacement(char) for char in count.non_gsm_characters})


def _utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _grapheme_costs(text: str) -> Iterator[int]:
    """Yield the cost of each unsplittable piece of UCS-2 text: one per extended grapheme cluster."""
    for cluster in _grapheme_patterns()[0].findall(text):
        if len(cluster) == 1:
            yield 2 if cluster > _LAST_BMP else 1
        elif cluster == _CR_LF:
            # Twilio's calculator splits CR LF into two characters (its test '\rabcde\r\n123' -> 11).
            yield 1
            yield 1
        elif (cost := _utf16_units(cluster)) <= UCS2_MULTI_SEGMENT_UNITS:
            yield cost
        else:
            # A cluster bigger than a whole segment (e.g. a letter with dozens of combining marks) cannot
            # be kept together on the wire; it is cut between code points, never inside a surrogate pair.
            yield from (2 if char > _LAST_BMP else 1 for char in cluster)


def _pack(costs: Iterable[int], capacity: int) -> tuple[int, int]:
    """Fill segments of ``capacity`` in order; an atom that doesn't fit starts the next segment.

    Returns (segments, units in the last segment)."""
    segments = 1
    used = 0
    for cost in costs:
        if used + cost > capacity:
            segments += 1
            used = 0
        used += cost
    return segments, used


def _pack_runs(runs: list[str], capacity: int) -> tuple[int, int]:
    """``_pack`` for runs of 1-cost atoms separated by single 2-cost atoms, one step per run."""
    segments = 1
    used = 0
    for index, run in enumerate(runs):
        if index:
            if used + 2 > capacity:
                segments += 1
                used = 0
            used += 2
        used += len(run)
        if used > capacity:
            # 1-cost atoms fill every segment to the brim.
            full = (used - 1) // capacity
            segments += full
            used -= full * capacity
    return segments, used
