"""Inbound email parsing: the corpus in email_corpus/ checked against expected.json,
then focused tests of each rule. No database: parse_email is a pure function."""

import dataclasses
import json
import time
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest

from channels_app.email_parsing import (
    MAX_REFERENCES,
    EmailParseError,
    ParsedEmail,
    build_reply_headers,
    html_to_text,
    parse_email,
    sanitize_filename,
    split_quoted,
    thread_keys,
)

CORPUS = Path(__file__).parent / "email_corpus"
EXPECTED = json.loads((CORPUS / "expected.json").read_text(encoding="utf-8"))
REPLY_DOMAIN = "reply.maplegrove-clinic.example"
CAP = 5 * 1024 * 1024


def parse(raw: bytes, **kwargs) -> ParsedEmail:
    kwargs.setdefault("max_attachment_bytes", CAP)
    kwargs.setdefault("reply_domain", REPLY_DOMAIN)
    return parse_email(raw, **kwargs)


def message(body: str = "Hello", *, headers: dict[str, str] | None = None, **mime) -> bytes:
    """A small raw message; `headers` replace or add to the defaults."""
    all_headers = {
        "From": "Pat Jones <pat@example.com>",
        "To": "frontdesk@maplegrove-clinic.example",
        "Subject": "Test",
        "Date": "Mon, 3 Mar 2025 09:14:11 -0500",
        "Message-ID": "<test-1@example.com>",
        "Content-Type": mime.get("content_type", "text/plain; charset=utf-8"),
        **(headers or {}),
    }
    head = "".join(f"{name}: {value}\n" for name, value in all_headers.items() if value)
    body_bytes = body if isinstance(body, bytes) else body.encode("utf-8")
    return head.encode("utf-8") + b"\n" + body_bytes


# The corpus --------------------------------------------------------------------------


def test_manifest_lists_exactly_the_corpus_files():
    assert set(EXPECTED) == {path.name for path in CORPUS.glob("*.eml")}
    assert len(EXPECTED) >= 16


@pytest.mark.parametrize("filename", sorted(EXPECTED))
def test_corpus_message_parses_to_its_expected_facts(filename):
    expected = EXPECTED[filename]
    parsed = parse((CORPUS / filename).read_bytes())

    assert parsed.subject == expected["subject"]
    assert parsed.from_address == expected["from_address"]
    assert expected["new_text_contains"] in parsed.new_text
    assert parsed.reply_token == expected.get("reply_token")
    assert parsed.is_auto_reply is expected.get("is_auto_reply", False)
    assert isinstance(parsed.date, datetime)
    assert parsed.date.tzinfo is not None
    for key in (
        "from_name",
        "message_id",
        "in_reply_to",
        "references",
        "cc_addresses",
        "to_addresses",
        "new_text",
        "quoted_text",
    ):
        if key in expected:
            assert getattr(parsed, key) == expected[key], key
    if "thread_keys" in expected:
        assert thread_keys(parsed) == expected["thread_keys"]
    if "body_text_contains" in expected:
        assert expected["body_text_contains"] in parsed.body_text
    for absent in expected.get("body_text_excludes", []):
        assert absent not in parsed.body_text
    for absent in expected.get("new_text_excludes", []):
        assert absent not in parsed.new_text
    if "quoted_text_contains" in expected:
        assert expected["quoted_text_contains"] in parsed.quoted_text

    assert len(parsed.attachments) == len(expected["attachments"])
    for attachment, facts in zip(parsed.attachments, expected["attachments"], strict=True):
        assert attachment.filename == facts["filename"]
        assert attachment.content_type == facts["content_type"]
        assert attachment.rejected_reason is None
        assert attachment.size == len(attachment.content)
        if "content_starts_with" in facts:
            assert attachment.content.startswith(facts["content_starts_with"].encode())
        if "content_id" in facts:
            assert attachment.content_id == facts["content_id"]
        assert attachment.inline is facts.get("inline", False)

    if expected["problems"]:
        for fragment in expected["problems"]:
            assert any(fragment in problem for problem in parsed.problems), parsed.problems
    else:
        assert parsed.problems == []


# Oversized attachment (generated: 20 MB is not committed) ----------------------------

TWENTY_MB = 20 * 1024 * 1024


@pytest.fixture(scope="module")
def message_with_20mb_attachment() -> bytes:
    msg = EmailMessage()
    msg["From"] = "Grace Lee <grace.lee@example.com>"
    msg["To"] = "frontdesk@maplegrove-clinic.example"
    msg["Subject"] = "MRI images from the hospital"
    msg["Date"] = "Tue, 25 Mar 2025 10:00:00 -0400"
    msg["Message-ID"] = "<big-attachment-1@example.com>"
    msg.set_content("The hospital gave me the MRI images on a disc, here they are.\n")
    msg.add_attachment(
        b"\x00DICM" * (TWENTY_MB // 5),
        maintype="application",
        subtype="dicom",
        filename="MRI_knee.dcm",
    )
    return msg.as_bytes()


def test_attachment_over_the_cap_is_listed_as_rejected_without_content_and_text_still_parsed(
    message_with_20mb_attachment,
):
    parsed = parse(message_with_20mb_attachment, max_attachment_bytes=10 * 1024 * 1024)

    assert parsed.new_text == "The hospital gave me the MRI images on a disc, here they are."
    [attachment] = parsed.attachments
    assert attachment.filename == "MRI_knee.dcm"
    assert attachment.content_type == "application/dicom"
    assert attachment.size == TWENTY_MB
    assert attachment.content is None
    assert "10485760-byte attachment limit" in attachment.rejected_reason
    assert parsed.problems == []


def test_attachment_under_the_cap_keeps_its_content(message_with_20mb_attachment):
    parsed = parse(message_with_20mb_attachment, max_attachment_bytes=TWENTY_MB)

    [attachment] = parsed.attachments
    assert attachment.rejected_reason is None
    assert len(attachment.content) == TWENTY_MB


# Quoting -------------------------------------------------------------------------------


def test_gt_quoted_lines_after_attribution_go_to_quoted_text():
    new, quoted = split_quoted(
        "Sounds good.\n\nOn Mon, Mar 3, 2025 at 9:00 AM Clinic <a@b.example> wrote:\n"
        "> Can you come at 9?\n> Thanks"
    )

    assert new == "Sounds good."
    assert quoted == "On Mon, Mar 3, 2025 at 9:00 AM Clinic <a@b.example> wrote:\n" + (
        "> Can you come at 9?\n> Thanks"
    )


def test_inline_answers_between_quoted_lines_stay_in_new_text():
    new, quoted = split_quoted(
        "On Mon, Mar 3, 2025, Clinic wrote:\n"
        "> Which day suits you?\n"
        "Tuesday please.\n"
        "> Do you need an interpreter?\n"
        "Yes, Spanish."
    )

    assert new == "Tuesday please.\nYes, Spanish."
    assert "> Which day suits you?" in quoted
    assert "> Do you need an interpreter?" in quoted
    assert "wrote:" in quoted


def test_attribution_wrapped_over_two_lines_is_recognised():
    new, quoted = split_quoted(
        "Yes.\n\nOn Tue, Mar 4, 2025 at 3:12 PM Maple Grove Family Medicine <\n"
        "reply+abcdefgh@reply.example> wrote:\n\nPlease confirm."
    )

    assert new == "Yes."
    assert quoted.endswith("Please confirm.")


def test_attribution_in_french_spanish_and_german_is_recognised():
    for attribution in (
        "Le lun. 3 mars 2025 à 09:00, Clinique <a@b.example> a écrit :",
        "El lun, 3 mar 2025 a las 9:00, Clínica (<a@b.example>) escribió:",
        "Am Mo., 3. März 2025 um 09:00 Uhr schrieb Praxis <a@b.example>:",
    ):
        new, quoted = split_quoted(f"Merci.\n\n{attribution}\n> Texte cité")

        assert new == "Merci.", attribution
        assert quoted.startswith(attribution[:6]), attribution


def test_outlook_from_sent_block_starts_the_quote_even_without_separator_rule():
    new, quoted = split_quoted(
        "Confirmed.\n\nFrom: Clinic <a@b.example>\nSent: Monday, March 10, 2025 5:30 PM\n"
        "To: Robert\nSubject: Appointment\n\nHello Robert"
    )

    assert new == "Confirmed."
    assert quoted.startswith("From: Clinic")
    assert quoted.endswith("Hello Robert")


def test_original_message_marker_starts_the_quote():
    new, quoted = split_quoted("Ok.\n-----Original Message-----\nFrom: x\n\nold text")

    assert new == "Ok."
    assert quoted == "-----Original Message-----\nFrom: x\n\nold text"


def test_a_lone_from_line_in_the_new_text_is_not_taken_for_an_outlook_block():
    text = "From: my neighbour I heard the clinic moved.\nIs that true?"

    assert split_quoted(text) == (text, "")


def test_forwarded_header_block_stays_in_new_text_when_the_subject_says_fwd():
    text = (
        "See below.\n\nFrom: Lab <lab@example.com>\nSent: Monday 9 AM\nTo: me\n"
        "Subject: Results\n\nAll normal."
    )

    new, quoted = split_quoted(text, is_forward=True)

    assert new == text
    assert quoted == ""


def test_quote_markers_after_an_inline_forward_marker_are_left_in_new_text():
    text = (
        "FYI\n---------- Forwarded message ---------\nFrom: Lab\n\n"
        "On Mon, Mar 3, 2025 Lab wrote:\n> earlier"
    )

    assert split_quoted(text) == (text, "")


def test_long_lines_that_start_like_an_attribution_are_split_in_bounded_time():
    # mail-parser-reply's attribution pattern backtracks on such lines (about ten
    # seconds for one line of 8,000 characters); each line is cut before matching.
    text = "\n".join(["On " + "a " * 2000] * 200) + "\n\nOn Mon, Mar 3, 2025, Clinic wrote:\n> old"

    started = time.monotonic()
    new, quoted = split_quoted(text)

    assert time.monotonic() - started < 20
    assert new.count("\n") == 199
    assert quoted == "On Mon, Mar 3, 2025, Clinic wrote:\n> old"


def test_nested_blockquotes_keep_their_depth_and_blank_lines_stay_quoted():
    parsed = parse(
        message(
            "<p>Yes.</p><blockquote><p>Tuesday?</p><p>Or Wednesday?</p>"
            "<blockquote>First message</blockquote></blockquote>",
            content_type="text/html; charset=utf-8",
        )
    )

    assert parsed.new_text == "Yes."
    assert parsed.quoted_text == "> Tuesday?\n>\n> Or Wednesday?\n>\n> > First message"


def test_html_only_gmail_reply_is_separated_through_its_blockquote():
    html = (
        '<div dir="ltr">Works for me.</div><br><div class="gmail_quote">'
        '<div class="gmail_attr">On Mon, Mar 3, 2025 at 9:00 AM Clinic &lt;a@b.example&gt; '
        'wrote:<br></div><blockquote class="gmail_quote">Tuesday at 10?<br>Clinic'
        "</blockquote></div>"
    )

    parsed = parse(message(html, content_type="text/html; charset=utf-8"))

    assert parsed.new_text == "Works for me."
    assert "> Tuesday at 10?" in parsed.quoted_text
    assert "> Clinic" in parsed.quoted_text


def test_body_text_keeps_both_the_new_and_the_quoted_part():
    parsed = parse(message("New words.\n\nOn Mon, Mar 3, 2025, Clinic wrote:\n> old words\n"))

    assert parsed.new_text == "New words."
    assert parsed.quoted_text.endswith("> old words")
    assert "New words." in parsed.body_text
    assert "> old words" in parsed.body_text


# Threading -----------------------------------------------------------------------------


def test_thread_keys_are_in_reply_to_then_references_newest_first_without_repeats():
    raw = message(
        headers={
            "Message-ID": "<child@example.com>",
            "In-Reply-To": "<parent@clinic.example>",
            "References": "<root@clinic.example> <middle@example.com>\n <parent@clinic.example>",
        }
    )

    assert thread_keys(parse(raw)) == [
        "parent@clinic.example",
        "middle@example.com",
        "root@clinic.example",
    ]


def test_thread_keys_fall_back_to_references_when_in_reply_to_is_missing():
    raw = message(headers={"References": "<a@x.example> <b@x.example>"})

    assert thread_keys(parse(raw)) == ["b@x.example", "a@x.example"]


def test_thread_keys_are_empty_without_threading_headers():
    assert thread_keys(parse(message())) == []


def test_message_ids_are_stored_without_brackets_or_whitespace():
    raw = message(
        headers={
            "Message-ID": "  <abc.123@mail.example>  ",
            "In-Reply-To": "<p@clinic.example> (Clinic's message of Mon, 3 Mar 2025)",
            "References": "<r1@x.example>,<r2@x.example>",
        }
    )

    parsed = parse(raw)

    assert parsed.message_id == "abc.123@mail.example"
    assert parsed.in_reply_to == "p@clinic.example"
    assert parsed.references == ["r1@x.example", "r2@x.example"]


def test_message_id_without_brackets_is_still_read():
    parsed = parse(message(headers={"Message-ID": "bare-id@mail.example"}))

    assert parsed.message_id == "bare-id@mail.example"


def test_missing_message_id_is_a_problem_not_an_error():
    parsed = parse(message(headers={"Message-ID": ""}))

    assert parsed.message_id is None
    assert any("Message-ID" in problem for problem in parsed.problems)


# Reply token ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("recipient", "token"),
    [
        ("reply+Ab3_x-Yz9@reply.maplegrove-clinic.example", "Ab3_x-Yz9"),
        ("Clinic <REPLY+Ab3_x-Yz9@Reply.MapleGrove-Clinic.example>", "Ab3_x-Yz9"),
        ("reply+" + "a" * 64 + "@reply.maplegrove-clinic.example", "a" * 64),
        ("reply+Ab3xYz9@reply.maplegrove-clinic.example", None),
        ("reply+" + "a" * 65 + "@reply.maplegrove-clinic.example", None),
        ("reply+Ab3x.Yz9Q@reply.maplegrove-clinic.example", None),
        ("reply+Ab3xYz9Q@evil.example", None),
        ("reply+Ab3xYz9Q@reply.maplegrove-clinic.example.evil.example", None),
        ("noreply+Ab3xYz9Q@reply.maplegrove-clinic.example", None),
        ("frontdesk@maplegrove-clinic.example", None),
    ],
)
def test_reply_token_is_read_only_from_a_well_formed_reply_address_on_our_domain(recipient, token):
    assert parse(message(headers={"To": recipient})).reply_token == token


def test_reply_token_is_found_in_cc_too():
    raw = message(headers={"Cc": "reply+CcToken99@reply.maplegrove-clinic.example"})

    assert parse(raw).reply_token == "CcToken99"


def test_reply_token_is_found_in_delivered_to_when_the_visible_recipients_lack_it():
    raw = message(
        headers={
            "To": "undisclosed-recipients:;",
            "Delivered-To": "reply+Bcc12345@reply.maplegrove-clinic.example",
        }
    )

    assert parse(raw).reply_token == "Bcc12345"


def test_reply_token_is_not_looked_for_without_a_reply_domain():
    raw = message(headers={"To": "reply+Ab3xYz9Q@reply.maplegrove-clinic.example"})

    assert parse(raw, reply_domain=None).reply_token is None


def test_two_different_reply_tokens_use_the_first_and_record_a_problem():
    raw = message(
        headers={
            "To": "reply+FirstTok1@reply.maplegrove-clinic.example",
            "Cc": "reply+SecondTo2@reply.maplegrove-clinic.example",
        }
    )

    parsed = parse(raw)

    assert parsed.reply_token == "FirstTok1"
    assert any("reply tokens" in problem for problem in parsed.problems)


# HTML reduction ------------------------------------------------------------------------


def test_html_script_and_style_content_never_reaches_the_text():
    html = (
        "<html><head><style>p { color: red }</style>"
        "<script type='text/javascript'>stealCookies('</p>')</script></head>"
        "<body><p>Hello</p><SCRIPT>alert(1)</SCRIPT><p>Bye</p></body></html>"
    )

    text = html_to_text(html)

    assert text == "Hello\n\nBye"


def test_unclosed_script_drops_everything_after_it():
    assert html_to_text("<p>Visible</p><script>var secret = 1; <p>hidden</p>") == "Visible"


def test_unterminated_tag_at_the_end_of_html_is_dropped_not_shown():
    assert html_to_text("<p>Thanks</p><a href='https://evil.example/x") == "Thanks"
    assert html_to_text("<p>Thanks</p><!-- unterminated <b>secret</b>") == "Thanks"


def test_html_the_stdlib_parser_rejects_keeps_the_text_before_the_fault_with_a_problem():
    problems = []

    text = html_to_text("<p>Before</p><!['x&#x'a after", problems=problems, where="part 1")

    assert text == "Before"
    assert problems and problems[0].startswith("part 1: HTML is malformed")


def test_html_tags_and_attributes_are_never_kept():
    text = html_to_text(
        '<p onclick="x()">Click <a href="javascript:evil()">here</a>'
        '<img src=x onerror="alert(1)"></p>'
    )

    assert text == "Click here"


def test_html_line_breaks_lists_and_entities_become_plain_text():
    html = (
        "<div>Line&nbsp;one<br>Line two</div><ul><li>First &amp; foremost</li>"
        "<li>Second&#8212;last</li></ul><p>Caf&eacute;   \n  closes   at 5&lt;6</p>"
    )

    assert html_to_text(html) == (
        "Line one\nLine two\n- First & foremost\n- Second\u2014last\n\nCafé closes at 5<6"
    )


def test_html_entity_that_spells_a_tag_stays_text_and_is_not_interpreted():
    assert html_to_text("<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>") == (
        "<script>alert(1)</script>"
    )


def test_html_part_is_used_when_the_plain_alternative_is_blank():
    raw = (
        b"From: a@example.com\nSubject: x\nMessage-ID: <m@x>\n"
        b"Date: Mon, 3 Mar 2025 09:00:00 +0000\n"
        b'Content-Type: multipart/alternative; boundary="b"\n\n'
        b"--b\nContent-Type: text/plain; charset=utf-8\n\n \n"
        b"--b\nContent-Type: text/html; charset=utf-8\n\n<p>Only in HTML</p>\n--b--\n"
    )

    assert parse(raw).body_text == "Only in HTML"


def test_plain_alternative_is_preferred_over_html():
    raw = (
        b"From: a@example.com\nSubject: x\nMessage-ID: <m@x>\n"
        b"Date: Mon, 3 Mar 2025 09:00:00 +0000\n"
        b'Content-Type: multipart/alternative; boundary="b"\n\n'
        b"--b\nContent-Type: text/plain; charset=utf-8\n\nplain words\n"
        b"--b\nContent-Type: text/html; charset=utf-8\n\n<p>html words</p>\n--b--\n"
    )

    assert parse(raw).body_text == "plain words"


# Reply headers -------------------------------------------------------------------------


def test_reply_headers_thread_under_the_parent():
    headers = build_reply_headers(
        own_message_id_domain="maplegrove-clinic.example",
        parent_message_id="parent@example.com",
        parent_references=["root@clinic.example", "<middle@example.com>"],
    )

    assert headers["Message-ID"].startswith("<")
    assert headers["Message-ID"].endswith("@maplegrove-clinic.example>")
    assert headers["In-Reply-To"] == "<parent@example.com>"
    assert headers["References"] == (
        "<root@clinic.example> <middle@example.com> <parent@example.com>"
    )


def test_reply_headers_give_a_new_message_id_each_time():
    first, second = (
        build_reply_headers(
            own_message_id_domain="maplegrove-clinic.example",
            parent_message_id=None,
            parent_references=None,
        )
        for _ in range(2)
    )

    assert first["Message-ID"] != second["Message-ID"]
    assert set(first) == {"Message-ID"}


def test_reply_headers_accept_the_raw_references_header_and_drop_repeats():
    headers = build_reply_headers(
        own_message_id_domain="maplegrove-clinic.example",
        parent_message_id="<p@x.example>",
        parent_references="<a@x.example>\r\n <b@x.example> <a@x.example> <p@x.example>",
    )

    assert headers["References"] == "<a@x.example> <b@x.example> <p@x.example>"


def test_reply_headers_references_keep_the_root_and_the_newest_ids_within_the_bound():
    chain = [f"m{n}@x.example" for n in range(50)]

    headers = build_reply_headers(
        own_message_id_domain="maplegrove-clinic.example",
        parent_message_id="parent@x.example",
        parent_references=chain,
    )

    ids = headers["References"].split()
    assert len(ids) == MAX_REFERENCES
    assert ids[0] == "<m0@x.example>"
    assert ids[-2:] == ["<m49@x.example>", "<parent@x.example>"]


def test_reply_headers_refuse_a_parent_id_that_could_inject_headers():
    with pytest.raises(ValueError, match="not a message id"):
        build_reply_headers(
            own_message_id_domain="maplegrove-clinic.example",
            parent_message_id="x\r\nBcc: victim@example.com",
            parent_references=[],
        )


def test_reply_headers_refuse_a_blank_own_domain():
    with pytest.raises(ValueError, match="domain"):
        build_reply_headers(
            own_message_id_domain=" ", parent_message_id=None, parent_references=None
        )


def test_reply_headers_thread_with_what_the_parser_read():
    parsed = parse((CORPUS / "12_gmail_reply_quoted.eml").read_bytes())

    headers = build_reply_headers(
        own_message_id_domain="maplegrove-clinic.example",
        parent_message_id=parsed.message_id,
        parent_references=parsed.references,
    )

    assert headers["In-Reply-To"] == "<CAF4pQr9=Yt5mC2xN8bV1zQ7wE4rD3@mail.gmail.com>"
    assert headers["References"].split()[0] == (
        "<20250301.090000.1001.thread@maplegrove-clinic.example>"
    )


# Unparseable input ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("From: a@example.com\n\nhi", "expected bytes, got str"),
        (None, "expected bytes, got NoneType"),
        (b"", "empty message"),
        (b"  \r\n\r\n ", "empty message"),
        (b"just some words\nwith no header at all\n", "no header fields"),
        (b"Subject: hi\n\nno sender", "no sender"),
        (b"From: undisclosed\nSubject: hi\n\nno address", "no sender"),
    ],
)
def test_unreadable_input_raises_email_parse_error_with_its_reason(raw, reason):
    with pytest.raises(EmailParseError, match=reason) as caught:
        parse_email(raw, max_attachment_bytes=CAP)

    assert reason in caught.value.reason


def test_message_over_the_hard_limit_raises_before_parsing():
    with pytest.raises(EmailParseError, match="over the 1000-byte limit"):
        parse_email(message("x" * 2000), max_attachment_bytes=CAP, max_message_bytes=1000)


def test_bytearray_input_is_accepted():
    assert parse(bytearray(message("bytes-like"))).body_text == "bytes-like"


# Charsets and damaged content ----------------------------------------------------------


def test_cp932_characters_decode_under_a_shift_jis_label():
    raw = message("①番窓口".encode("cp932"), content_type="text/plain; charset=shift_jis")

    parsed = parse(raw)

    assert parsed.body_text == "①番窓口"
    assert parsed.problems == []


def test_utf8_bytes_under_a_us_ascii_label_decode_as_utf8_with_a_problem():
    raw = message("Zoë".encode(), content_type="text/plain; charset=us-ascii")

    parsed = parse(raw)

    assert parsed.body_text == "Zoë"
    assert parsed.problems == [
        "part 1 (text/plain): bytes are not valid charset 'us-ascii'; decoded as UTF-8"
    ]


def test_a_codec_that_is_no_text_encoding_counts_as_an_unknown_charset():
    parsed = parse(message("aGVsbG8=", content_type="text/plain; charset=base64"))

    assert parsed.body_text == "aGVsbG8="
    assert any("unknown charset 'base64'" in problem for problem in parsed.problems)


def test_unknown_charset_in_an_encoded_word_subject_is_a_problem():
    parsed = parse(message(headers={"Subject": "=?x-klingon?Q?caf=E9?= visit"}))

    assert parsed.subject.endswith("visit")
    assert any("unknown charset 'x-klingon'" in problem for problem in parsed.problems)


def test_raw_8bit_header_that_is_not_utf8_decodes_as_windows_1252_with_a_problem():
    raw = (
        b"From: Ren\xe9e Roy <renee@example.com>\nSubject: caf\xe9\nMessage-ID: <m@x>\n"
        b"Date: Mon, 3 Mar 2025 09:00:00 +0000\n\nbody"
    )

    parsed = parse(raw)

    assert parsed.subject == "café"
    assert parsed.from_name == "Renée Roy"
    assert any("windows-1252" in problem for problem in parsed.problems)


def test_damaged_base64_body_is_a_problem_not_an_error():
    raw = message(
        "SGVsbG8gd29ybGQ*!!!",
        headers={"Content-Transfer-Encoding": "base64"},
    )

    parsed = parse(raw)

    assert any("base64" in problem for problem in parsed.problems)


def test_multipart_without_its_boundary_keeps_its_text_as_the_body_with_a_problem():
    raw = message(
        "Please call me back about my referral.",
        content_type='multipart/mixed; boundary="never-used"',
    )

    parsed = parse(raw)

    assert parsed.body_text == "Please call me back about my referral."
    assert parsed.attachments == []
    assert any("boundary" in problem for problem in parsed.problems)


def test_nul_characters_are_removed_from_the_text():
    assert parse(message("a\x00b")).body_text == "ab"


def test_date_with_unknown_zone_is_taken_as_utc():
    parsed = parse(message(headers={"Date": "Mon, 3 Mar 2025 09:14:00 -0000"}))

    assert parsed.date == datetime(2025, 3, 3, 9, 14, tzinfo=UTC)


def test_unparseable_date_is_none_with_a_problem():
    parsed = parse(message(headers={"Date": "next tuesday-ish"}))

    assert parsed.date is None
    assert any("Date header" in problem for problem in parsed.problems)


# Auto replies ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "auto"),
    [
        ({"Auto-Submitted": "auto-replied"}, True),
        ({"Auto-Submitted": "auto-generated; owner-email=x@example.com"}, True),
        ({"Auto-Submitted": "no"}, False),
        ({"X-Autoreply": "yes"}, True),
        ({"Precedence": "bulk"}, True),
        ({"Precedence": "auto_reply"}, True),
        ({"Precedence": "junk"}, True),
        ({"Precedence": "first-class"}, False),
        ({}, False),
    ],
)
def test_auto_reply_is_recognised_from_its_headers(headers, auto):
    assert parse(message(headers=headers)).is_auto_reply is auto


# Attachments, forwards -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\pat\\Desktop\\insurance card.jpg", "insurance card.jpg"),
        ("invoice\u202efdp.exe", "invoicefdp.exe"),
        ("  .hidden  ", "hidden"),
        ('what?"<x>".pdf', "what___x__.pdf"),
        ("CON.txt", "_CON.txt"),
        ("../..", "fallback.bin"),
        ("", "fallback.bin"),
    ],
)
def test_attachment_filename_is_sanitised(name, safe):
    assert sanitize_filename(name, fallback="fallback.bin") == safe


def test_long_attachment_filename_is_cut_to_255_bytes_keeping_the_extension():
    safe = sanitize_filename("é" * 300 + ".pdf", fallback="x")

    assert safe.endswith(".pdf")
    assert len(safe.encode()) <= 255


def test_attachment_path_in_the_mime_header_is_stripped():
    msg = EmailMessage()
    msg["From"] = "a@example.com"
    msg.set_content("see file")
    msg.add_attachment(b"data", maintype="application", subtype="octet-stream")
    msg.get_payload()[1].set_param("filename", "../../../tmp/evil.sh", "Content-Disposition")

    [attachment] = parse(msg.as_bytes()).attachments

    assert attachment.filename == "evil.sh"


def test_attachments_inside_a_forwarded_message_are_collected():
    inner = EmailMessage()
    inner["From"] = "lab@example.com"
    inner["Subject"] = "Results"
    inner.set_content("Results attached.")
    inner.add_attachment(b"%PDF-1.4 fake", maintype="application", subtype="pdf", filename="r.pdf")
    outer = EmailMessage()
    outer["From"] = "pat@example.com"
    outer["Subject"] = "Fwd: Results"
    outer.set_content("Forwarding this.")
    outer.add_attachment(inner)

    parsed = parse(outer.as_bytes())

    assert "Results attached." in parsed.new_text
    assert "Subject: Results" in parsed.body_text
    assert [a.filename for a in parsed.attachments] == ["r.pdf"]


def test_parsed_email_is_immutable():
    parsed = parse(message())

    with pytest.raises(dataclasses.FrozenInstanceError):
        parsed.subject = "changed"
