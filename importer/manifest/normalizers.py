"""The normalizers that undo what spreadsheets do to data, one per kind of field.

A manifest cell arrives as text (Excel turned ``5551234567`` into ``5551234567.0`` and ``02134``
into ``2134``; people typed ``(555) 123-4567``). Each normalizer turns such text into the exact
form the API takes, or raises ``ValueError`` saying what was expected. They are pure, and
``NORMALIZERS`` names the one of every field that has one (``call_date`` is read in
``call_dates``, a recording's path in ``identity``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from functools import lru_cache

DISPOSITIONS: frozenset[str] = frozenset({"ANSWERED", "NO ANSWER", "BUSY"})

_EXCEL_NUMBER = re.compile(r"^[+-]?\d+(\.\d*)?([eE][+-]?\d+)?$")
_PHONE_FORMATTING = re.compile(r"[\s().\-/+]")
_ZIP_PLUS4 = re.compile(r"^(\d{5})-\d{4}$")
_URL = re.compile(r"^https?://[^\s/?#]+", re.IGNORECASE)
_TRUE = frozenset({"true", "t", "yes", "y", "1", "1.0"})
_FALSE = frozenset({"false", "f", "no", "n", "0", "0.0"})
#: Normalizers are pure and a column repeats few values (a group id, a disposition), so each
#: keeps its recent answers: a million-row manifest then normalizes most cells by one lookup.
_CACHE = 4096


def undo_excel_number(text: str) -> str:
    """``"12.0"`` -> ``"12"``, ``"5.551234567E9"`` -> ``"5551234567"``; other text unchanged.

    Exact (decimal, not binary floating point), so no digit is changed on the way.
    """
    text = text.strip()
    if ("." in text or "e" in text or "E" in text) and _EXCEL_NUMBER.match(text):
        try:
            number = Decimal(text)
        except InvalidOperation:  # pragma: no cover - the pattern admits only numbers
            return text
        if number == number.to_integral_value() and abs(number) < 10**30:
            return str(int(number))
    return text


def rounded_by_excel(text: str) -> bool:
    """True for a number in scientific notation with fewer digits than the whole number has:
    Excel showed ``6175550142`` as ``6.17555E+09`` in a narrow column and exported what it
    showed, so the last digits are lost and must not be made up as zeros."""
    if "e" not in text and "E" not in text:
        return False
    text = text.strip()
    if not _EXCEL_NUMBER.match(text):
        return False
    mantissa = re.split("[eE]", text, maxsplit=1)[0].lstrip("+-").replace(".", "").lstrip("0")
    whole = undo_excel_number(text).lstrip("+-")
    return whole.isdigit() and len(mantissa) < len(whole)


_ROUNDED = ("the number written out in full; Excel rounded it to scientific notation, so "
            "digits are lost (format the column as Text or Number and export again)")


@lru_cache(maxsize=_CACHE)
def normalize_id(text: str) -> str:
    """A numeric id such as ``group_id``: digits only, Excel's ``.0`` removed."""
    value = undo_excel_number(text)
    if not value.isdigit() or not value.isascii():
        raise ValueError("a whole number such as 1234")
    return value.lstrip("0") or "0"


def normalize_external_id(text: str) -> str:
    """An id of the caller's own (``external_id``, ``group_ext_id``): any text, but a number that
    Excel stored as ``1234.0`` or ``1.234E3`` becomes ``1234`` again; a number Excel rounded is
    refused rather than sent as another call's id."""
    if rounded_by_excel(text):
        raise ValueError(_ROUNDED)
    return undo_excel_number(text)


@lru_cache(maxsize=_CACHE)
def normalize_phone(text: str) -> str:
    """Digits only; ``+1 (555) 123-4567`` -> ``5551234567`` (a NANP number loses its leading 1);
    other international numbers keep all their digits, without ``+``.

    ``5551234567.0`` is a phone Excel stored as a number; ``555.0000`` is a phone written with
    a dot: only a number of seven digits or more before the ``.0`` is taken for Excel's.
    """
    if rounded_by_excel(text):
        raise ValueError(_ROUNDED)
    whole = undo_excel_number(text)
    if "." in text and len(whole.lstrip("+-")) < 7:
        whole = text
    value = _PHONE_FORMATTING.sub("", whole)
    if not value.isdigit() or not value.isascii():
        raise ValueError("a phone number of digits, such as 5551234567 or (555) 123-4567")
    if len(value) == 11 and value.startswith("1"):
        value = value[1:]
    if not 3 <= len(value) <= 15:
        raise ValueError("a phone number of 3 to 15 digits")
    return value


@lru_cache(maxsize=_CACHE)
def normalize_ten_digit_phone(text: str) -> str:
    """A US number the API checks for exactly 10 digits (``ring_to``, ``tracking_number``)."""
    value = normalize_phone(text)
    if len(value) != 10:
        raise ValueError("a 10-digit US phone number such as 5551234567")
    return value


@lru_cache(maxsize=_CACHE)
def normalize_zip(text: str) -> str:
    """Five digits; leading zeros that Excel dropped come back (``2134`` -> ``02134``);
    ZIP+4 keeps its first five digits, the only part the API takes."""
    value = undo_excel_number(text)
    plus4 = _ZIP_PLUS4.match(value)
    if plus4:
        return plus4.group(1)
    if not value.isdigit() or not value.isascii() or len(value) > 5:
        raise ValueError("a 5-digit US zip code such as 02134")
    return value.zfill(5)


@lru_cache(maxsize=_CACHE)
def normalize_bool(text: str) -> str:
    """``true``/``false`` as the API spells them, from yes/no, y/n, 1/0 and Excel's TRUE/FALSE."""
    value = text.strip().lower()
    if value in _TRUE:
        return "true"
    if value in _FALSE:
        return "false"
    raise ValueError("true or false (also yes/no, y/n, 1/0)")


@lru_cache(maxsize=_CACHE)
def normalize_disposition(text: str) -> str:
    """Upper-cased, ``no_answer`` read as ``NO ANSWER``, and one of the values the API knows."""
    value = re.sub(r"[\s_]+", " ", text.strip().upper())
    if value not in DISPOSITIONS:
        raise ValueError("one of " + ", ".join(sorted(DISPOSITIONS)))
    return value


def normalize_url(text: str) -> str:
    """An http(s) URL with a host; the API fetches the recording from it."""
    value = text.strip()
    if not _URL.match(value):
        raise ValueError("an http:// or https:// URL")
    return value


#: The normalizer of every field that has one; fields not listed are free text, stripped.
#: ``call_date`` and ``recording_file`` need the row's context and are handled apart.
NORMALIZERS: dict[str, Callable[[str], str]] = {
    "recording_url": normalize_url,
    "group_id": normalize_id, "channel_id": normalize_id, "campaign_id": normalize_id,
    "external_id": normalize_external_id, "group_ext_id": normalize_external_id,
    "caller_id": normalize_phone,
    "ring_to": normalize_ten_digit_phone, "tracking_number": normalize_ten_digit_phone,
    "zip_code": normalize_zip,
    "swap_channels": normalize_bool, "is_outbound": normalize_bool, "transcribe": normalize_bool,
    "disposition": normalize_disposition,
}
