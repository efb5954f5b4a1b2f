"""The redactor on transcripts as patients write and say them."""

import io
import json
import logging

from structlog.stdlib import ProcessorFormatter

from understanding.redaction import luhn_valid, redact


def test_sms_transcript_loses_every_identifier_and_keeps_the_request():
    transcript = (
        "Hi this is Ana, DOB 03/14/1972, MRN: A-48213377. Call me at (415) 555-0134 or "
        "email ana.ruiz@example.org. My card 4111 1111 1111 1111 was charged twice, "
        "SSN 219-09-9999 is on file."
    )
    redacted = redact(transcript)
    assert redacted == (
        "Hi this is Ana, DOB [date], [mrn]. Call me at [phone] or "
        "email [email]. My card [card] was charged twice, "
        "SSN [ssn] is on file."
    )


def test_spanish_voicemail_transcript_with_written_dates_and_international_number():
    transcript = (
        "Hola, habla Luis, nací el 5 de marzo de 1980, mi número de expediente es 77812345, "
        "mi celular es +52 55 1234 5678, la cita era el 12 de enero."
    )
    assert redact(transcript) == (
        "Hola, habla Luis, nací el [date], mi [mrn], mi celular es [phone], la cita era el [date]."
    )


def test_english_written_dates_and_iso_dates():
    assert redact("seen on March 3rd, 2024 and 2024-03-10") == "seen on [date] and [date]"


def test_card_numbers_must_pass_luhn_to_be_taken():
    assert luhn_valid("4111111111111111")
    assert not luhn_valid("4111111111111112")
    assert redact("order 4111 1111 1111 1112 shipped") == "order 4111 1111 1111 1112 shipped"


def test_text_without_phi_is_unchanged():
    text = "What time do you open on Saturday? 2 kids, 1 adult"
    assert redact(text) == text
    assert redact("") == ""


def test_log_lines_lose_phi_shapes_in_their_message_and_traceback():
    # The project's own formatter (settings.LOGGING), writing to a buffer.
    [console] = [
        handler
        for handler in logging.getLogger().handlers
        if isinstance(handler.formatter, ProcessorFormatter)
    ]
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(console.formatter)
    logger = logging.getLogger("tests.redaction")
    logger.addHandler(handler)
    try:
        raise ValueError("no patient with phone 415-555-0134 born 03/14/1972")
    except ValueError:
        logger.exception("lookup failed for ana.ruiz@example.org")
    finally:
        logger.removeHandler(handler)
    line = buffer.getvalue().strip()
    record = json.loads(line)
    assert record["event"] == "lookup failed for [email]"
    # The traceback keeps its frames, whose source lines are redacted too; the
    # exception's message is withheld altogether (contactcenter/logging.py).
    assert 'raise ValueError("no patient with phone [phone] born [date]")' in (record["exception"])
    assert "415-555-0134" not in line
    assert "ana.ruiz" not in line
