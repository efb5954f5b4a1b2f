"""Text with the PHI shapes taken out, for wherever a message must be shown or
kept without its identifiers: notification previews, exported samples, logs.

Pattern-based: phone numbers found by `phonenumbers`' matcher (any format it
recognises, in the practice's region or with a country code), e-mail addresses,
dates (numeric and written out, English and Spanish), medical record numbers
introduced as such, social security numbers, and card numbers that pass the Luhn
check. Names and free-text addresses are not patterns; callers that must hide those
show no text at all."""

import re

import phonenumbers
from django.conf import settings

EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", re.UNICODE)
SSN = re.compile(r"\b(?!000|666|9\d\d)\d{3}[- ]?(?!00)\d{2}[- ]?(?!0000)\d{4}\b")
MRN = re.compile(
    r"\b(?:MRN|medical record(?: number| no\.?| #)?|record (?:number|no\.?|#)|"
    r"expediente|historia cl[ií]nica|n[uú]mero de expediente)\s*(?:[:#]|is|es)?\s*"
    r"[A-Z]{0,3}-?\d[\d-]{3,14}\b",
    re.IGNORECASE,
)
CARD_CANDIDATE = re.compile(r"\b\d(?:[ -]?\d){12,18}\b")
_MONTHS = (
    r"jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|"
    r"sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?|"
    r"enero|febrero|marzo|abril|mayo|junio|julio|agosto|septiembre|setiembre|"
    r"octubre|noviembre|diciembre"
)
DATES = [
    re.compile(r"\b\d{4}-\d{1,2}-\d{1,2}\b"),
    re.compile(r"\b\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}\b"),
    re.compile(rf"\b(?:{_MONTHS})\.?\s+\d{{1,2}}(?:st|nd|rd|th)?(?:,?\s+\d{{4}})?\b", re.I),
    re.compile(
        rf"\b\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+|de\s+)?(?:{_MONTHS})\b(?:,?\s+(?:de\s+)?\d{{4}})?",
        re.I,
    ),
]

PLACEHOLDERS = {
    "phone": "[phone]",
    "email": "[email]",
    "date": "[date]",
    "mrn": "[mrn]",
    "ssn": "[ssn]",
    "card": "[card]",
}


def luhn_valid(digits):
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _spans(text, region):
    """(start, end, kind) of every PHI shape, before overlaps are settled."""
    spans = []
    for match in EMAIL.finditer(text):
        spans.append((match.start(), match.end(), "email"))
    for match in MRN.finditer(text):
        spans.append((match.start(), match.end(), "mrn"))
    for match in CARD_CANDIDATE.finditer(text):
        digits = re.sub(r"\D", "", match.group())
        if 13 <= len(digits) <= 19 and luhn_valid(digits):
            spans.append((match.start(), match.end(), "card"))
    for match in SSN.finditer(text):
        spans.append((match.start(), match.end(), "ssn"))
    for pattern in DATES:
        for match in pattern.finditer(text):
            spans.append((match.start(), match.end(), "date"))
    for match in phonenumbers.PhoneNumberMatcher(
        text, region, leniency=phonenumbers.Leniency.VALID
    ):
        spans.append((match.start, match.end, "phone"))
    return spans


def redact(text, *, region=None):
    """`text` with each PHI shape replaced by a placeholder such as [phone]. Where
    two shapes overlap, the longer span wins (an MRN's digits are not also a
    phone number)."""
    if not text:
        return text
    region = region or settings.PHONE_DEFAULT_REGION
    chosen = []
    for start, end, kind in sorted(_spans(text, region), key=lambda s: (-(s[1] - s[0]), s[0])):
        if all(end <= s or start >= e for s, e, _k in chosen):
            chosen.append((start, end, kind))
    out = []
    cursor = 0
    for start, end, kind in sorted(chosen):
        out.append(text[cursor:start])
        out.append(PLACEHOLDERS[kind])
        cursor = end
    out.append(text[cursor:])
    return "".join(out)
