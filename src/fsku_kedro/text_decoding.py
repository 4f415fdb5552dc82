"""Decoding user files written in UTF-8 (with or without BOM) or a Korean legacy encoding."""

from __future__ import annotations

# cp949 is a superset of euc-kr: it decodes every euc-kr file, so euc-kr needs no try of its own.
KOREAN_TEXT_ENCODINGS = ("utf-8-sig", "cp949")


def decode_korean_text(raw: bytes) -> tuple[str, str]:
    """(text, encoding) for the first of ``KOREAN_TEXT_ENCODINGS`` that decodes every byte;
    otherwise the UTF-8 ``UnicodeDecodeError`` (its position points at the first bad byte)."""
    first_error: UnicodeDecodeError | None = None
    for encoding in KOREAN_TEXT_ENCODINGS:
        try:
            return raw.decode(encoding), encoding
        except UnicodeDecodeError as error:
            first_error = first_error or error
    raise first_error
