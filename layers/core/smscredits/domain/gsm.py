"""GSM 03.38 (3GPP TS 23.038) default alphabet: the basic and extension tables, as data."""

# Index == GSM-7 code. Cross-checked cell by cell against Twilio's UnicodeToGSM.ts
# (docs/research/segment-rules.md).
GSM7_BASIC = (
    "@\xa3$\xa5\xe8\xe9\xf9\xec\xf2\xc7\n\xd8\xf8\r\xc5\xe5"  # 0x00-0x0F
    "\u0394_\u03a6\u0393\u039b\u03a9\u03a0\u03a8\u03a3\u0398\u039e\x1b\xc6\xe6\xdf\xc9"  # 0x10-0x1F
    " !\"#\xa4%&'()*+,-./"  # 0x20-0x2F
    "0123456789:;<=>?"  # 0x30-0x3F
    "\xa1ABCDEFGHIJKLMNO"  # 0x40-0x4F
    "PQRSTUVWXYZ\xc4\xd6\xd1\xdc\xa7"  # 0x50-0x5F
    "\xbfabcdefghijklmno"  # 0x60-0x6F
    "pqrstuvwxyz\xe4\xf6\xf1\xfc\xe0"  # 0x70-0x7F
)

# 0x1B is the escape to the extension table, not a character anyone can send; Twilio treats a literal
# U+001B in a body as non-GSM (UCS-2).
GSM7_ESCAPE = "\x1b"

# Each is sent as ESC + code, so it costs 2 septets. Codes: FF=0x0A ^=0x14 {=0x28 }=0x29 \=0x2F [=0x3C
# ~=0x3D ]=0x3E |=0x40 EURO=0x65.
GSM7_EXTENSION = "\x0c^{}\\[~]|\u20ac"

GSM7_BASIC_CHARS: frozenset[str] = frozenset(GSM7_BASIC) - {GSM7_ESCAPE}
GSM7_EXTENSION_CHARS: frozenset[str] = frozenset(GSM7_EXTENSION)
# The 137 characters a GSM-7 message may contain.
GSM7_CHARS: frozenset[str] = GSM7_BASIC_CHARS | GSM7_EXTENSION_CHARS
