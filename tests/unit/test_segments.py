"""Segment counting against Twilio's rules (docs/research/segment-rules.md); expectations are derived by hand."""

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from smscredits.domain.segments import SegmentCount, count_segments, gsm_replacement, replace_non_gsm
from smscredits.domain.smart_encoding import SMART_ENCODING_MAP, apply_smart_encoding

GSM = "GSM-7"
UCS = "UCS-2"

# Written out independently of smscredits.domain.gsm so a transcription slip there fails here.
# The GSM-7 basic table without ESC: 127 characters.
GSM_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
GSM_EXT = "\f^{}\\[~]|€"

ZH = "ж"  # a BMP non-GSM letter: 1 UTF-16 unit
GRIN = "😀"  # U+1F600, a surrogate pair: 2 units
FLAG_AU = "🇦🇺"  # two regional indicators: 4 units, one grapheme
THUMBS_MEDIUM = "👍🏽"  # U+1F44D + skin tone U+1F3FD: 4 units, one grapheme
FAMILY = "👨\u200d👩\u200d👧"  # man ZWJ woman ZWJ girl: 2+1+2+1+2 = 8 units, one grapheme
E_ACUTE_DECOMPOSED = "e\u0301"  # 2 units, one grapheme

CASES: list[tuple[str, str, bool, str, int, int]] = [
    # (id, text, smart_encoding, encoding, segments, units)
    # --- GSM-7, basic characters only: 1 septet each; 160 single, 153 per part ---
    ("empty-twilio-1-segment", "", False, GSM, 1, 0),
    ("gsm-1a", "a", False, GSM, 1, 1),
    ("gsm-hello-world-11", "Hello world", False, GSM, 1, 11),
    ("gsm-whole-basic-table-127", GSM_BASIC, False, GSM, 1, 127),
    ("gsm-159a", "a" * 159, False, GSM, 1, 159),
    ("gsm-160a-single-max", "a" * 160, False, GSM, 1, 160),
    ("gsm-161a-153+8", "a" * 161, False, GSM, 2, 161),
    ("gsm-305a-153+152", "a" * 305, False, GSM, 2, 305),
    ("gsm-306a-153+153", "a" * 306, False, GSM, 2, 306),
    ("gsm-307a-153+153+1", "a" * 307, False, GSM, 3, 307),
    ("gsm-458a-3x153-1", "a" * 458, False, GSM, 3, 458),
    ("gsm-459a-3x153", "a" * 459, False, GSM, 3, 459),
    ("gsm-460a-3x153+1", "a" * 460, False, GSM, 4, 460),
    ("gsm-612a-4x153", "a" * 612, False, GSM, 4, 612),
    ("gsm-613a-4x153+1", "a" * 613, False, GSM, 5, 613),
    ("gsm-1530a-10x153", "a" * 1530, False, GSM, 10, 1530),
    ("gsm-1531a-10x153+1", "a" * 1531, False, GSM, 11, 1531),
    ("gsm-1600a-max-body-10x153+70", "a" * 1600, False, GSM, 11, 1600),
    ("gsm-C-cedilla-capital-0x09", "Ç", False, GSM, 1, 1),
    ("gsm-e-acute-precomposed-0x05", "é", False, GSM, 1, 1),
    ("gsm-greek-capital-delta-0x10", "Δ", False, GSM, 1, 1),
    ("gsm-lone-CR", "\r", False, GSM, 1, 1),
    # --- GSM-7 extension characters: 2 septets, the escape pair is one atom ---
    ("ext-euro-2", "€", False, GSM, 1, 2),
    ("ext-all-ten-10x2", GSM_EXT, False, GSM, 1, 20),
    ("ext-form-feed-a+FF+b-1+2+1", "a\fb", False, GSM, 1, 4),
    ("ext-159a+FF-161-153|6+2", "a" * 159 + "\f", False, GSM, 2, 161),
    ("ext-79-euro-158", "€" * 79, False, GSM, 1, 158),
    ("ext-80-euro-160-single", "€" * 80, False, GSM, 1, 160),
    ("ext-81-euro-162-76+5-euro", "€" * 81, False, GSM, 2, 162),
    ("ext-80-euro+a-161-152|9", "€" * 80 + "a", False, GSM, 2, 161),
    ("ext-152-euro-304-76+76", "€" * 152, False, GSM, 2, 304),
    ("ext-153-euro-306-76+76+1", "€" * 153, False, GSM, 3, 306),
    ("ext-228-euro-456-3x76", "€" * 228, False, GSM, 3, 456),
    ("ext-229-euro-458-3x76+1", "€" * 229, False, GSM, 4, 458),
    ("ext-40x{}-160-single", "{}" * 40, False, GSM, 1, 160),
    ("ext-40x{}+a-161", "{}" * 40 + "a", False, GSM, 2, 161),
    ("ext-152-brackets-304-2", "]" * 152, False, GSM, 2, 304),
    ("ext-153-brackets-306-3-issue39", "]" * 153, False, GSM, 3, 306),
    ("ext-158a+euro-160-single", "a" * 158 + "€", False, GSM, 1, 160),
    ("ext-159a+euro-161-153|6+2", "a" * 159 + "€", False, GSM, 2, 161),
    ("ext-straddle-152a+euro+8a-152|2+8", "a" * 152 + "€" + "a" * 8, False, GSM, 2, 162),
    # 306 septets, but the pair can't sit at septet 153: 152 | 2+151 | 1
    ("ext-straddle-152a+euro+152a-3", "a" * 152 + "€" + "a" * 152, False, GSM, 3, 306),
    ("ext-no-straddle-151a+euro+153a-153|153", "a" * 151 + "€" + "a" * 153, False, GSM, 2, 306),
    ("ext-304a+pipe-306-153|151+2", "a" * 304 + "|", False, GSM, 2, 306),
    ("ext-305a+pipe-307-153|152|2", "a" * 305 + "|", False, GSM, 3, 307),
    ("ext-457a+tilde-459-153|153|151+2", "a" * 457 + "~", False, GSM, 3, 459),
    ("ext-458a+tilde-460-153|153|152|2", "a" * 458 + "~", False, GSM, 4, 460),
    # --- line breaks: LF 1, CR 1, CR LF 2 ---
    ("lf-80a+LF+79a-160-single", "a" * 80 + "\n" + "a" * 79, False, GSM, 1, 160),
    ("crlf-80a+CRLF+79a-161-2seg", "a" * 80 + "\r\n" + "a" * 79, False, GSM, 2, 161),
    ("crlf-twilio-test-CR+abcde+CRLF+123-11", "\rabcde\r\n123", False, GSM, 1, 11),
    # --- a single non-GSM code point makes the whole message UCS-2 ---
    ("ucs2-c-cedilla-small", "ç", False, UCS, 1, 1),
    ("ucs2-e+combining-acute-2-units", E_ACUTE_DECOMPOSED, False, UCS, 1, 2),
    ("ucs2-backtick", "`", False, UCS, 1, 1),
    ("ucs2-tab", "\t", False, UCS, 1, 1),
    ("ucs2-nbsp", "\xa0", False, UCS, 1, 1),
    ("ucs2-literal-ESC", "\x1b", False, UCS, 1, 1),
    ("ucs2-greek-capital-alpha-U+0391", "Α", False, UCS, 1, 1),
    ("ucs2-check-mark", "✓", False, UCS, 1, 1),
    ("ucs2-emoji-surrogate-pair-2", GRIN, False, UCS, 1, 2),
    ("ucs2-keycap-1+FE0F+20E3-3", "1\ufe0f\u20e3", False, UCS, 1, 3),
    ("ucs2-euro-costs-1-in-ucs2", "€" + ZH, False, UCS, 1, 2),
    ("ucs2-69-euro+c-cedilla-70-single", "€" * 69 + "ç", False, UCS, 1, 70),
    ("ucs2-70-euro+c-cedilla-71-67+4", "€" * 70 + "ç", False, UCS, 2, 71),
    ("ucs2-70-brackets+check-71-67+4", "]" * 70 + "✓", False, UCS, 2, 71),
    ("ucs2-100a+check+59a-160-67+67+26", "a" * 100 + "✓" + "a" * 59, False, UCS, 3, 160),
    ("ucs2-159a+c-cedilla-160-3seg", "a" * 159 + "ç", False, UCS, 3, 160),
    ("ucs2-100a+decomposed-e-102-67+35", "a" * 100 + E_ACUTE_DECOMPOSED, False, UCS, 2, 102),
    ("ucs2-1599a+c-cedilla-1600-23x67+59", "a" * 1599 + "ç", False, UCS, 24, 1600),
    # --- UCS-2 boundaries: 70 single, 67 per part ---
    ("ucs2-69", ZH * 69, False, UCS, 1, 69),
    ("ucs2-70-single-max", ZH * 70, False, UCS, 1, 70),
    ("ucs2-71-67+4", ZH * 71, False, UCS, 2, 71),
    ("ucs2-133-67+66", ZH * 133, False, UCS, 2, 133),
    ("ucs2-134-67+67", ZH * 134, False, UCS, 2, 134),
    ("ucs2-135-67+67+1", ZH * 135, False, UCS, 3, 135),
    ("ucs2-201-3x67", ZH * 201, False, UCS, 3, 201),
    ("ucs2-202-3x67+1", ZH * 202, False, UCS, 4, 202),
    ("ucs2-1600-units-23x67+59", ZH * 1600, False, UCS, 24, 1600),
    # --- surrogate pairs: never split ---
    ("emoji-35-70-units-single", GRIN * 35, False, UCS, 1, 70),
    ("emoji-36-72-units-33+3", GRIN * 36, False, UCS, 2, 72),
    ("emoji-67-134-units-33+33+1", GRIN * 67, False, UCS, 3, 134),
    ("emoji-800-1600-units-33-per-seg-24x33+8", GRIN * 800, False, UCS, 25, 1600),
    ("emoji-at-unit-67-66+emoji+10-66|12", ZH * 66 + GRIN + ZH * 10, False, UCS, 2, 78),
    # 134 units, but the pair can't occupy units 67-68: 66 | 2+65 | 1
    ("emoji-at-unit-67-66+emoji+66-3", ZH * 66 + GRIN + ZH * 66, False, UCS, 3, 134),
    ("emoji-fits-65+emoji+67-67|67", ZH * 65 + GRIN + ZH * 67, False, UCS, 2, 134),
    # --- grapheme clusters: never split (Twilio's calculator; disputed by surrogate-pair splitters) ---
    ("flag-au-4-units", FLAG_AU, False, UCS, 1, 4),
    ("flag-straddle-65+flag+65-65|4+63|2", ZH * 65 + FLAG_AU + ZH * 65, False, UCS, 3, 134),
    ("flag-fits-63+flag+67-67|67", ZH * 63 + FLAG_AU + ZH * 67, False, UCS, 2, 134),
    ("skin-tone-4-units", THUMBS_MEDIUM, False, UCS, 1, 4),
    ("skin-tone-straddle-64+thumb+66-64|4+63|3", ZH * 64 + THUMBS_MEDIUM + ZH * 66, False, UCS, 3, 134),
    ("skin-tone-fits-63+thumb+67-67|67", ZH * 63 + THUMBS_MEDIUM + ZH * 67, False, UCS, 2, 134),
    ("zwj-family-8-units", FAMILY, False, UCS, 1, 8),
    ("zwj-family-straddle-60+fam+66-60|8+59|7", ZH * 60 + FAMILY + ZH * 66, False, UCS, 3, 134),
    ("zwj-family-fits-59+fam+67-67|67", ZH * 59 + FAMILY + ZH * 67, False, UCS, 2, 134),
    ("combining-35x-e-acute-70-single", E_ACUTE_DECOMPOSED * 35, False, UCS, 1, 70),
    ("combining-70x-e-acute-140-33x2|33x2|4x2", E_ACUTE_DECOMPOSED * 70, False, UCS, 3, 140),
    # A cluster longer than a whole part can't stay together on the wire; it is cut between code points.
    ("oversized-cluster-e+200-marks-201-3x67", "e" + "\u0301" * 200, False, UCS, 3, 201),
    ("oversized-cluster-60+e+69-marks-60+7|63", ZH * 60 + "e" + "\u0301" * 69, False, UCS, 2, 130),
    # --- CR LF in UCS-2: two atoms of 1, so the pair may be split ---
    ("ucs2-68+CRLF-70-single", ZH * 68 + "\r\n", False, UCS, 1, 70),
    ("ucs2-crlf-split-66+CR|LF+66-67|67", ZH * 66 + "\r\n" + ZH * 66, False, UCS, 2, 134),
    # --- Smart Encoding (replacement per code point, then count) ---
    ("smart-off-curly-quotes-ucs2", "“Hello”", False, UCS, 1, 7),
    ("smart-curly-double-quotes-gsm", "“Hello”", True, GSM, 1, 7),
    ("smart-curly-apostrophe-gsm", "it’s", True, GSM, 1, 4),
    ("smart-backtick-to-apostrophe", "`x`", True, GSM, 1, 3),
    ("smart-em-dash-a-b", "a—b", True, GSM, 1, 3),
    ("smart-off-em-dash-ucs2", "a—b", False, UCS, 1, 3),
    ("smart-en-dash", "1–2", True, GSM, 1, 3),
    ("smart-ellipsis-to-3-dots", "…", True, GSM, 1, 3),
    ("smart-off-ellipsis-158-ucs2-67+67+24", "a" * 157 + "…", False, UCS, 3, 158),
    ("smart-ellipsis-157a+ellipsis-160-single", "a" * 157 + "…", True, GSM, 1, 160),
    ("der-ellipsis-158-off-156a+2-ellipses-ucs2-3seg", "a" * 156 + "……", False, UCS, 3, 158),
    ("der-ellipsis-158-on-156+3+3-162-gsm-2seg", "a" * 156 + "……", True, GSM, 2, 162),
    ("smart-nbsp-to-two-spaces", "a\xa0b", True, GSM, 1, 4),
    ("der-nbsp-160-off-79a+nbsp+79a-ucs2-159", "a" * 79 + "\xa0" + "a" * 79, False, UCS, 3, 159),
    ("der-nbsp-160-on-79+2+79-160-single", "a" * 79 + "\xa0" + "a" * 79, True, GSM, 1, 160),
    ("smart-tab-to-seven-spaces", "a\tb", True, GSM, 1, 9),
    ("smart-tab-154a+tab-161-2seg", "a" * 154 + "\t", True, GSM, 2, 161),
    ("smart-off-tab-154a+tab-155-ucs2-67+67+21", "a" * 154 + "\t", False, UCS, 3, 155),
    ("smart-one-half-to-1/2", "½", True, GSM, 1, 3),
    ("smart-zwnj-U+200C-deleted", "a\u200cb", True, GSM, 1, 2),
    ("smart-bom-U+FEFF-deleted", "\ufeffhi", True, GSM, 1, 2),
    ("smart-angle-quotes-reversed-as-twilio", "‹›", True, GSM, 1, 2),
    ("smart-fullwidth-tilde-to-ext-2-septets", "～", True, GSM, 1, 2),
    ("smart-accent-not-transliterated", "á", True, UCS, 1, 1),
    ("smart-c-cedilla-stays-ucs2", "ç", True, UCS, 1, 1),
    ("smart-euro-untouched", "€", True, GSM, 1, 2),
    ("smart-gsm-text-unchanged", "a" * 161, True, GSM, 2, 161),
    ("smart-quotes-with-emoji-stays-ucs2", "“Hi” " + GRIN, True, UCS, 1, 7),
    ("smart-empty", "", True, GSM, 1, 0),
]


@pytest.mark.parametrize(
    ("text", "smart", "encoding", "segments", "units"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_count_segments(text: str, smart: bool, encoding: str, segments: int, units: int) -> None:
    # When
    result = count_segments(text, smart_encoding=smart)

    # Then
    assert (result.encoding, result.segments, result.units) == (encoding, segments, units)


def test_case_ids_are_unique_and_numerous() -> None:
    ids = [case[0] for case in CASES]
    assert len(set(ids)) == len(ids)
    assert len(ids) >= 90


def test_gsm_text_reports_no_non_gsm_characters_and_code_point_count() -> None:
    result = count_segments("Hi € [x]\r\n")

    assert result == SegmentCount("GSM-7", 1, 10, 13, (), "Hi € [x]\r\n", 160, 13)


def test_non_gsm_characters_are_distinct_code_points_in_order_of_first_appearance() -> None:
    result = count_segments("Ça ç✓ç€✓ж")

    # Ç and € are GSM; ç, ✓ and ж are not.
    assert result.non_gsm_characters == ("ç", "✓", "ж")
    assert result.characters == 9
    assert result.units == 9


def test_grapheme_clusters_are_reported_per_code_point() -> None:
    result = count_segments(FAMILY + FLAG_AU + E_ACUTE_DECOMPOSED)

    # 5 + 2 + 2 code points; 8 + 4 + 2 units.
    assert result.characters == 9
    assert result.units == 14
    assert result.non_gsm_characters == ("👨", "\u200d", "👩", "👧", "🇦", "🇺", "\u0301")


def test_smart_encoding_reports_the_replaced_text() -> None:
    result = count_segments("“Wait…” — ok", smart_encoding=True)

    assert result.text == '"Wait..." - ok'
    assert result.characters == 14
    assert result.non_gsm_characters == ()


def test_without_smart_encoding_the_text_is_counted_as_given() -> None:
    text = "  trailing\r\n  "

    result = count_segments(text)

    assert result.text == text
    assert result.characters == 14


def test_smart_encoding_table_has_twilio_entries_and_only_gsm_replacements() -> None:
    # 270 entries from SmartEncodingMap.ts plus U+200C (v1.3.0).
    assert len(SMART_ENCODING_MAP) == 271
    assert SMART_ENCODING_MAP["\u200c"] == ""
    assert SMART_ENCODING_MAP["\t"] == " " * 7
    assert SMART_ENCODING_MAP["\xa0"] == "  "
    assert SMART_ENCODING_MAP["\u2026"] == "..."
    assert all(len(key) == 1 for key in SMART_ENCODING_MAP)
    assert set("".join(SMART_ENCODING_MAP.values())) <= set(GSM_BASIC) | set(GSM_EXT)


gsm_basic_text = st.text(alphabet=st.sampled_from(GSM_BASIC), max_size=1700)
gsm_text = st.text(alphabet=st.sampled_from(GSM_BASIC + GSM_EXT), max_size=1700)


@given(text=gsm_text, char=st.sampled_from(GSM_BASIC + GSM_EXT))
def test_appending_a_gsm_character_never_lowers_the_segment_count(text: str, char: str) -> None:
    before = count_segments(text)
    after = count_segments(text + char)

    assert after.encoding == before.encoding == "GSM-7"
    assert after.segments >= before.segments


@given(text=gsm_basic_text)
def test_gsm_text_without_extension_characters_needs_ceil_n_over_153(text: str) -> None:
    result = count_segments(text)

    n = len(text)
    assert result.units == n
    assert result.segments == (1 if n <= 160 else -(-n // 153))


@given(text=gsm_text)
def test_escape_pairs_cost_at_most_one_extra_segment_per_boundary(text: str) -> None:
    result = count_segments(text)

    # Each segment after the first can lose at most one septet to an escape pair kept whole.
    assert result.units == len(text) + sum(text.count(char) for char in GSM_EXT)
    if result.units > 160:
        assert -(-result.units // 153) <= result.segments <= -(-result.units // 152)


@given(text=st.text(max_size=400))
def test_smart_encoding_is_idempotent(text: str) -> None:
    once = apply_smart_encoding(text)

    assert apply_smart_encoding(once) == once
    assert count_segments(text, smart_encoding=True) == count_segments(once)


def _reference_segments(text: str) -> tuple[str, int, int, int, int]:
    """The rules read literally, atom by atom with a full grapheme split: slow but obviously right.

    (encoding, segments, units, units per segment, units in the last segment)"""
    if all(char in GSM_BASIC or char in GSM_EXT for char in text):
        atoms = [2 if char in GSM_EXT else 1 for char in text]
        encoding, single, multi = GSM, 160, 153
    else:
        atoms = []
        for cluster in regex.findall(r"\X", text):
            units = len(cluster.encode("utf-16-le")) // 2
            if cluster == "\r\n" or units > 67:
                atoms.extend(len(char.encode("utf-16-le")) // 2 for char in cluster)
            else:
                atoms.append(units)
        encoding, single, multi = UCS, 70, 67
    total = sum(atoms)
    if total <= single:
        return encoding, 1, total, single, total
    segments, used = 1, 0
    for atom in atoms:
        if used + atom > multi:
            segments, used = segments + 1, 0
        used += atom
    return encoding, segments, total, multi, used


# Ingredients that exercise every path: GSM basic and extension, BMP non-GSM, surrogate pairs, CR/LF,
# combining marks, ZWJ, skin tones, regional indicators, variation selectors, Hangul jamo, Devanagari.
MIXED_ALPHABET = [
    *"a€]\r\n",
    ZH,
    GRIN,
    "\u0301",
    "\u200d",
    "\U0001f3fd",
    "👍",
    "🇦",
    "🇺",
    "\ufe0f",
    "\u1100",
    "\u1161",
    "\u11a8",
    "가",
    "क",
    "\u094d",
    "ि",
]


@settings(max_examples=300)
@given(parts=st.lists(st.sampled_from(MIXED_ALPHABET), max_size=400))
def test_count_matches_a_literal_reading_of_the_rules(parts: list[str]) -> None:
    text = "".join(parts)

    result = count_segments(text)

    assert (
        result.encoding,
        result.segments,
        result.units,
        result.segment_capacity,
        result.last_segment_units,
    ) == _reference_segments(text)


@given(text=gsm_text)
def test_gsm_count_matches_a_literal_reading_of_the_rules(text: str) -> None:
    result = count_segments(text)

    assert (
        result.encoding,
        result.segments,
        result.units,
        result.segment_capacity,
        result.last_segment_units,
    ) == _reference_segments(text)


@pytest.mark.parametrize(
    ("text", "capacity", "last"),
    [
        pytest.param("", 160, 0, id="empty"),
        pytest.param("a" * 160, 160, 160, id="gsm-160-full-single"),
        pytest.param("a" * 161, 153, 8, id="gsm-161-second-part-8"),
        pytest.param("a" * 306, 153, 153, id="gsm-306-two-full-parts"),
        pytest.param("a" * 307, 153, 1, id="gsm-307-third-part-1"),
        pytest.param("a" * 159 + "€", 153, 8, id="gsm-escape-pair-fits-the-second-part"),
        pytest.param("a" * 152 + "€" + "a" * 10, 153, 12, id="gsm-escape-pair-not-split-starts-part-2"),
        pytest.param("ж" * 70, 70, 70, id="ucs2-70-full-single"),
        pytest.param(GRIN * 40, 67, 14, id="ucs2-surrogate-pair-not-split-33+7"),
        pytest.param("a" * 66 + FAMILY, 67, 8, id="ucs2-grapheme-not-split"),
    ],
)
def test_the_last_segment_fill_is_what_the_billing_count_packed(text: str, capacity: int, last: int) -> None:
    result = count_segments(text)

    assert (result.segment_capacity, result.last_segment_units) == (capacity, last)
    assert result.last_segment_units_left == capacity - last


def test_a_character_with_a_look_alike_is_replaced_and_one_without_is_removed() -> None:
    assert gsm_replacement("’") == "'"
    assert gsm_replacement("…") == "..."
    assert gsm_replacement(GRIN) == ""
    assert gsm_replacement("ж") == ""


def test_replacing_every_non_gsm_character_leaves_gsm_text_of_the_counted_text() -> None:
    count = count_segments("It’s “great” " + GRIN + " жa")

    replaced = replace_non_gsm(count)

    assert replaced == 'It\'s "great"  a'
    assert count_segments(replaced).encoding == GSM


@given(text=st.text(max_size=300))
def test_replacing_the_non_gsm_characters_always_gives_gsm_7(text: str) -> None:
    assert count_segments(replace_non_gsm(count_segments(text))).encoding == GSM
