"""Parse one inbound email (raw RFC 5322 bytes) into the facts the channels app needs.

Pure functions: the standard library's email package reads the MIME structure,
inscriptis reduces HTML to text and mail-parser-reply finds where a reply's quote
begins. `parse_email` never trusts the message: every charset decodes (a wrong or
unknown one falls back with replacement characters and is recorded in `problems`),
HTML is reduced to plain text without keeping any tag, and attachment names lose any
path. Only a message that cannot be read at all raises `EmailParseError`.

Message ids are kept bare: surrounding whitespace and the angle brackets are removed
(`<abc@mail.example>` becomes `abc@mail.example`) in `message_id`, `in_reply_to`,
`references` and `thread_keys`, so the stored form never depends on how a sender wrote
the header. `build_reply_headers` puts the brackets back when it writes headers.
"""

from __future__ import annotations

import bisect
import codecs
import itertools
import mimetypes
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.message import Message
from email.parser import BytesParser
from email.utils import getaddresses, make_msgid, parsedate_to_datetime
from html.parser import HTMLParser

from inscriptis import get_annotated_text
from inscriptis.css_profiles import CSS_PROFILES
from inscriptis.html_properties import Display
from inscriptis.model.config import ParserConfig
from inscriptis.model.html_document_state import HtmlDocumentState
from inscriptis.model.html_element import HtmlElement
from inscriptis.model.tag import CustomHtmlTagHandlerMapping
from mailparser_reply import EmailMessage

# Generous enough for a 35 MB attachment after base64, small enough that one request
# cannot make a worker hold gigabytes.
MAX_MESSAGE_BYTES = 50 * 1024 * 1024
# Deeper nesting than this is no real mail client's output, only a way to exhaust the stack.
MAX_MIME_DEPTH = 20
# RFC 5322 asks to keep References short; the root plus the newest ids keep threading intact.
MAX_REFERENCES = 20

_REPLY_TOKEN = re.compile(r"[A-Za-z0-9_-]{8,64}")
_BRACKETED_ID = re.compile(r"<([^<>\s]+)>")
_BARE_ID = re.compile(r"[^<>\s,;]+@[^<>\s,;]+")
_ENCODED_WORD_CHARSET = re.compile(r"=\?([^?*]+)(?:\*[^?]*)?\?[QqBb]\?")
_FORWARD_SUBJECT = re.compile(r"^\s*fwd?\s*:", re.IGNORECASE)
_AUTO_PRECEDENCE = {"bulk", "auto_reply", "junk"}

# Labels that mail clients use for a narrower charset than the one they really write.
_CHARSET_SUPERSETS = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "shift_jis": "cp932",
    "shift-jis": "cp932",
    "sjis": "cp932",
    "x-sjis": "cp932",
    "ks_c_5601-1987": "cp949",
    "euc-kr": "cp949",
    "iso-8859-8-i": "iso-8859-8",
}

_DEFECT_TEXT = {
    "StartBoundaryNotFoundDefect": "the multipart boundary never appears",
    "CloseBoundaryNotFoundDefect": "the multipart is never closed",
    "MultipartInvariantViolationDefect": "declared multipart but has no parts",
    "InvalidBase64PaddingDefect": "damaged base64 (bad padding)",
    "InvalidBase64CharactersDefect": "damaged base64 (invalid characters)",
    "InvalidBase64LengthDefect": "damaged base64 (truncated)",
    "MissingHeaderBodySeparatorDefect": "a header line is malformed",
    "NoBoundaryInMultipartDefect": "multipart without a boundary",
    "MisplacedEnvelopeHeaderDefect": "a stray mbox 'From ' line",
}


class EmailParseError(ValueError):
    """The input is not an email message we can read at all."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ParsedAttachment:
    filename: str
    content_type: str
    size: int
    content: bytes | None
    rejected_reason: str | None = None
    content_id: str | None = None
    inline: bool = False


@dataclass(frozen=True)
class ParsedEmail:
    message_id: str | None
    in_reply_to: str | None
    references: list[str]
    subject: str
    from_address: str
    from_name: str
    to_addresses: list[str]
    cc_addresses: list[str]
    date: datetime | None
    body_text: str
    new_text: str
    quoted_text: str
    attachments: list[ParsedAttachment]
    reply_token: str | None
    is_auto_reply: bool
    problems: list[str] = field(default_factory=list)


def parse_email(
    raw: bytes,
    *,
    max_attachment_bytes: int,
    reply_domain: str | None = None,
    max_message_bytes: int = MAX_MESSAGE_BYTES,
) -> ParsedEmail:
    """Parse raw message bytes.

    Attachments larger than `max_attachment_bytes` are listed with `rejected_reason`
    and no content. `reply_token` is looked for only when `reply_domain` is given.
    """
    if not isinstance(raw, bytes | bytearray):
        raise EmailParseError(f"expected bytes, got {type(raw).__name__}")
    if len(raw) > max_message_bytes:
        raise EmailParseError(
            f"message is {len(raw)} bytes, over the {max_message_bytes}-byte limit"
        )
    if not raw.strip():
        raise EmailParseError("empty message")
    try:
        message = BytesParser(policy=policy.default).parsebytes(bytes(raw))
    except Exception as exc:  # the stdlib parser is the judge of "parseable at all"
        # The class name only: the parser's message can quote the header text, and
        # this reason is logged and answered to the webhook caller.
        raise EmailParseError(
            f"MIME structure cannot be parsed ({exc.__class__.__name__})"
        ) from exc
    if not message.keys():
        raise EmailParseError("no header fields: this is not an email message")

    problems: list[str] = []
    from_pairs = _addresses(message, "From", problems)
    if not from_pairs:
        raise EmailParseError("no sender: the From header is missing or has no address")
    from_name, from_address = from_pairs[0]

    subject = _header_text(message, "Subject", problems)
    message_id = _first_id(_raw_header(message, "Message-ID"))
    if message_id is None:
        problems.append("no Message-ID header; duplicates cannot be recognised by id")
    walker = _BodyWalker(max_attachment_bytes=max_attachment_bytes, problems=problems)
    walker.walk(message)
    body_text = _clean_text("\n\n".join(s.strip("\r\n") for s in walker.segments if s.strip()))
    new_text, quoted_text = split_quoted(
        body_text, is_forward=bool(_FORWARD_SUBJECT.match(subject))
    )

    to_pairs = _addresses(message, "To", problems)
    cc_pairs = _addresses(message, "Cc", problems)
    return ParsedEmail(
        message_id=message_id,
        in_reply_to=_first_id(_raw_header(message, "In-Reply-To")),
        references=_all_ids(_raw_header(message, "References")),
        subject=subject,
        from_address=from_address.lower(),
        from_name=from_name,
        to_addresses=[addr.lower() for _, addr in to_pairs],
        cc_addresses=[addr.lower() for _, addr in cc_pairs],
        date=_date(message, problems),
        body_text=body_text,
        new_text=new_text,
        quoted_text=quoted_text,
        attachments=walker.attachments,
        reply_token=_reply_token(message, to_pairs + cc_pairs, reply_domain, problems),
        is_auto_reply=_is_auto_reply(message),
        problems=problems,
    )


def thread_keys(parsed: ParsedEmail) -> list[str]:
    """Message ids to look the parent conversation up by, best first: In-Reply-To,
    then References from the newest (last) to the thread root (first)."""
    keys: list[str] = []
    candidates = [parsed.in_reply_to, *reversed(parsed.references)]
    for key in candidates:
        if key and key != parsed.message_id and key not in keys:
            keys.append(key)
    return keys


def build_reply_headers(
    *,
    own_message_id_domain: str,
    parent_message_id: str | None,
    parent_references: Sequence[str] | str | None,
) -> dict[str, str]:
    """Threading headers for a message we send in reply to `parent_message_id`.

    Ids may be given bare or bracketed; `parent_references` may also be the raw
    References header. References keeps the thread root and the newest ids, at most
    `MAX_REFERENCES` in all.
    """
    if not own_message_id_domain or _has_space_or_control(own_message_id_domain):
        raise ValueError("own_message_id_domain must be a plain domain name")
    headers = {"Message-ID": make_msgid(domain=own_message_id_domain)}
    if parent_message_id is None:
        return headers
    parent = _single_id(parent_message_id)
    if parent is None:
        raise ValueError(f"not a message id: {parent_message_id!r}")

    if isinstance(parent_references, str):
        chain = _all_ids(parent_references)
    else:
        chain = [i for i in (_single_id(r) for r in parent_references or ()) if i]
    chain = [i for i in dict.fromkeys(chain) if i != parent] + [parent]
    if len(chain) > MAX_REFERENCES:
        chain = [chain[0], *chain[-(MAX_REFERENCES - 1) :]]
    headers["In-Reply-To"] = f"<{parent}>"
    headers["References"] = " ".join(f"<{i}>" for i in chain)
    return headers


# Quoting ---------------------------------------------------------------------------

# Where a reply's quote begins is mail-parser-reply's work: its patterns know the
# attribution lines ("On ... wrote:", "Le ... a écrit :", "Am ... schrieb ...:") of
# many languages and clients, Outlook's From:/Sent:/To:/Subject: block and
# "-----Original Message-----". We use its compiled header pattern rather than its
# reply list, because the list is cut from a whitespace-normalised copy of the text
# and keeps no positions; lines here are matched one for one.
_REPLY_LANGUAGES = ["en", "es", "fr", "de"]
_REPLY_HEADER = EmailMessage(text="", languages=list(_REPLY_LANGUAGES)).HEADER_REGEX
# Fallback: the library's Spanish pattern wants two spaces before "escribió"
# (`\s escribió`), so Gmail's Spanish attribution ("El lun, 3 mar 2025 a las 9:00,
# Clínica (<a@b.example>) escribió:") goes unseen; this project's patients write
# Spanish. Same shape as the library's English pattern, one space.
_SPANISH_ATTRIBUTION = re.compile(r"^(?:> ?)*El\s(?:.+?\s?.+?)\s?escribió\s?:$", re.MULTILINE)
# The library has no notion of a forward; what follows these markers is what the
# sender means to show us.
_FORWARD_MARKER = re.compile(
    r"^\s*(?:-{3,}\s*Forwarded message\s*-{3,}|Begin forwarded message:)\s*$", re.IGNORECASE
)
# Outlook's rule above its header block belongs to the quote (the library drops it
# while normalising, so it never reaches a header match).
_OUTLOOK_RULE = re.compile(r"^\s*_{20,}\s*$")


# The library's patterns backtrack heavily on a long line that starts like an
# attribution ("On a a a ..." costs seconds at a few thousand characters), so they
# see each line cut to this length (real attribution lines are shorter: clients wrap
# them, and a wrapped one is matched over two lines) and only the first lines of a
# body, where a reply's quote starts. Past them only `>` lines are quoted.
_HEADER_LINE_CHARS = 120
_HEADER_SEARCH_LINES = 1000


def split_quoted(text: str, *, is_forward: bool = False) -> tuple[str, str]:
    """Split a plain-text body into (new text, quoted text).

    `>` lines are quoted wherever they are, so inline answers stay in the new text.
    A reply header (as mail-parser-reply recognises it) directly above `>` lines
    belongs to that quote; anywhere else it starts a top-posted quote: everything
    from there on is quoted. Forwarded content (after a forward marker, or after any
    header of a message whose subject says Fwd) is what the sender means to show us,
    so it stays new.
    """
    lines = text.split("\n")
    headers = _ReplyHeaders(lines)
    new: list[str] = []
    quoted: list[str] = []
    i = 0
    while i < len(lines):
        found = headers.first_at_or_after(i)
        header_at, span = found if found else (len(lines), 0)
        for index in range(i, header_at):
            line = lines[index]
            if _FORWARD_MARKER.match(line):
                new.extend(lines[index:])
                return _joined(new), _joined(quoted)
            (quoted if line.startswith(">") else new).append(line)
        if not found:
            break
        after = _next_non_blank(lines, header_at + span)
        if lines[header_at].startswith(">") or (after is not None and lines[after].startswith(">")):
            quoted.extend(lines[header_at : header_at + span])
            i = header_at + span
            continue
        start = header_at
        rule = _previous_non_blank(lines, header_at)
        if rule is not None and rule >= i and _OUTLOOK_RULE.match(lines[rule]):
            del new[len(new) - (header_at - rule) :]
            start = rule
        (new if is_forward else quoted).extend(lines[start:])
        break
    return _joined(new), _joined(quoted)


class _ReplyHeaders:
    """Finds reply headers line by line in one copy of the body's first lines, each
    stripped (the library strips lines before matching) and cut, so line numbers
    stay the body's."""

    def __init__(self, lines: list[str]):
        searched = [line.strip()[:_HEADER_LINE_CHARS] for line in lines[:_HEADER_SEARCH_LINES]]
        self.segment = "\n".join(searched)
        self.line_starts = list(
            itertools.accumulate((len(line) + 1 for line in searched), initial=0)
        )

    def first_at_or_after(self, line: int) -> tuple[int, int] | None:
        """(line index, line count) of the first reply header at or after `line`."""
        if line >= len(self.line_starts) - 1:
            return None
        position = self.line_starts[line]
        matches = [
            match
            for match in (
                _REPLY_HEADER.search(self.segment, position),
                _SPANISH_ATTRIBUTION.search(self.segment, position),
            )
            if match
        ]
        if not matches:
            return None
        match = min(matches, key=lambda m: m.start())
        header = match.group(0)
        offset = match.start() + len(header) - len(header.lstrip("\n"))
        index = bisect.bisect_right(self.line_starts, offset) - 1
        return index, header.strip("\n").count("\n") + 1


def _joined(lines: list[str]) -> str:
    return "\n".join(lines).strip()


def _next_non_blank(lines: list[str], start: int) -> int | None:
    for index in range(start, len(lines)):
        if lines[index].strip():
            return index
    return None


def _previous_non_blank(lines: list[str], before: int) -> int | None:
    for index in range(before - 1, -1, -1):
        if lines[index].strip():
            return index
    return None


# MIME walking ----------------------------------------------------------------------


class _BodyWalker:
    """Collects body text segments and attachments from a MIME tree in reading order."""

    def __init__(self, *, max_attachment_bytes: int, problems: list[str]):
        self.max_attachment_bytes = max_attachment_bytes
        self.problems = problems
        self.segments: list[str] = []
        self.attachments: list[ParsedAttachment] = []
        self._leaf_count = 0

    def walk(self, part: Message, *, depth: int = 0, attachments_only: bool = False) -> None:
        if depth > MAX_MIME_DEPTH:
            self.problems.append(f"MIME nesting deeper than {MAX_MIME_DEPTH}; the rest skipped")
            return
        content_type = _scrub(part.get_content_type())
        inner = (
            _inner_message(part) if content_type in ("message/rfc822", "message/global") else None
        )
        if inner is not None:
            self._forwarded(inner, depth=depth, attachments_only=attachments_only)
        elif part.is_multipart():
            children = part.get_payload()
            preferred = (
                _preferred_alternative(children)
                if content_type == "multipart/alternative"
                else None
            )
            for child in children:
                skip_text = attachments_only or (preferred is not None and child is not preferred)
                self.walk(child, depth=depth + 1, attachments_only=skip_text)
        else:
            self._leaf(part, attachments_only=attachments_only)
        self._record_defects(part, content_type)

    def _leaf(self, part: Message, *, attachments_only: bool) -> None:
        self._leaf_count += 1
        where = f"part {self._leaf_count} ({_scrub(part.get_content_type())})"
        # A multipart whose boundary is missing arrives as one leaf: its text is the body.
        if _is_body_text(part) or part.get_content_maintype() == "multipart":
            if not attachments_only:
                text = _part_text(part, where, self.problems)
                if part.get_content_type() == "text/html":
                    text = html_to_text(text, problems=self.problems, where=where)
                self.segments.append(text)
            return
        self.attachments.append(self._attachment(part, where))

    def _attachment(self, part: Message, where: str) -> ParsedAttachment:
        content_type = _scrub(part.get_content_type())
        try:
            content = part.get_payload(decode=True) or b""
        except (ValueError, TypeError, LookupError) as exc:
            self.problems.append(f"{where}: content cannot be decoded ({exc})")
            content = b""
        raw_name = _safe_get_filename(part, where, self.problems)
        filename = sanitize_filename(raw_name, fallback=_fallback_name(self, content_type))
        content_id = _first_id(_raw_header(part, "Content-ID"))
        disposition = part.get_content_disposition()
        size = len(content)
        rejected = None
        if size > self.max_attachment_bytes:
            rejected = f"{size} bytes is over the {self.max_attachment_bytes}-byte attachment limit"
        return ParsedAttachment(
            filename=filename,
            content_type=content_type,
            size=size,
            content=None if rejected else content,
            rejected_reason=rejected,
            content_id=content_id,
            inline=disposition == "inline" or (disposition is None and content_id is not None),
        )

    def _forwarded(self, inner: Message, *, depth: int, attachments_only: bool) -> None:
        if not attachments_only:
            header_lines = ["---------- Forwarded message ---------"]
            for name in ("From", "Date", "Subject", "To"):
                value = _header_text(inner, name, self.problems)
                if value:
                    header_lines.append(f"{name}: {value}")
            self.segments.append("\n".join(header_lines))
        self.walk(inner, depth=depth + 1, attachments_only=attachments_only)

    def _record_defects(self, part: Message, content_type: str) -> None:
        for defect in part.defects:
            name = type(defect).__name__
            self.problems.append(f"{content_type}: {_DEFECT_TEXT.get(name, name)}")


def _inner_message(part: Message) -> Message | None:
    payload = part.get_payload()
    if isinstance(payload, list):
        return payload[0] if payload else None
    # A forwarded message sent base64-encoded (RFC 2046 forbids it; clients still do it).
    data = part.get_payload(decode=True)
    if not data:
        return None
    try:
        inner = BytesParser(policy=policy.default).parsebytes(data)
    except Exception:  # unreadable: the part is kept as an attachment instead
        return None
    return inner if inner.keys() else None


def _preferred_alternative(children: list[Message]) -> Message | None:
    """Plain text first; an HTML version only when the plain one is missing or blank."""

    def score(child: Message) -> int:
        content_type = child.get_content_type()
        if content_type == "text/plain" and _is_body_text(child) and _has_text(child):
            return 2
        if content_type == "text/html" or child.get_content_maintype() == "multipart":
            return 1
        return 0

    scores = [score(child) for child in children]
    if not scores or max(scores) == 0:
        return None
    return children[scores.index(max(scores))]


def _has_text(part: Message) -> bool:
    try:
        return bool((part.get_payload(decode=True) or b"").strip())
    except (ValueError, TypeError, LookupError):
        return False


def _is_body_text(part: Message) -> bool:
    return (
        part.get_content_type() in ("text/plain", "text/html")
        and part.get_content_disposition() != "attachment"
        and not part.get_param("filename", header="content-disposition")
        and not part.get_param("name")
    )


def _fallback_name(walker: _BodyWalker, content_type: str) -> str:
    extension = mimetypes.guess_extension(content_type) or ""
    return f"attachment-{len(walker.attachments) + 1}{extension}"


def _safe_get_filename(part: Message, where: str, problems: list[str]) -> str:
    try:
        name = part.get_filename() or ""
    except (ValueError, TypeError, LookupError, IndexError):
        problems.append(f"{where}: the attachment name cannot be decoded")
        return ""
    return _decode_raw_8bit(name, where, problems) if _has_raw_8bit(name) else _scrub(name)


# Text decoding ---------------------------------------------------------------------


def _part_text(part: Message, where: str, problems: list[str]) -> str:
    try:
        data = part.get_payload(decode=True) or b""
    except (ValueError, TypeError, LookupError) as exc:
        problems.append(f"{where}: content cannot be decoded ({exc})")
        return ""
    declared = part.get_content_charset()
    return decode_bytes(data, declared or "us-ascii", where=where, problems=problems)


def decode_bytes(data: bytes, label: str, *, where: str, problems: list[str]) -> str:
    """Decode with the declared charset; never raises.

    A label the bytes do not fit is often a sender writing UTF-8 under another name,
    so UTF-8 is tried before replacing what cannot be decoded.
    """
    codec = _codec_for(label)
    if codec is None:
        problems.append(
            f"{where}: unknown charset {label!r}; decoded as UTF-8 with replacement characters"
        )
        return data.decode("utf-8", errors="replace")
    try:
        return data.decode(codec)
    except UnicodeDecodeError:
        pass
    if codec != "utf-8":
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            problems.append(f"{where}: bytes are not valid charset {label!r}; decoded as UTF-8")
            return text
    problems.append(f"{where}: bytes are not valid charset {label!r}; undecodable bytes replaced")
    return data.decode(codec, errors="replace")


def _codec_for(label: str) -> str | None:
    label = label.strip().strip('"').lower()
    label = _CHARSET_SUPERSETS.get(label, label)
    try:
        info = codecs.lookup(label)
    except (LookupError, ValueError):  # ValueError: a NUL inside the label
        return None
    # codecs also knows bytes-to-bytes transforms ("base64", "zlib") that are no charset.
    if not getattr(info, "_is_text_encoding", True):
        return None
    return info.name


def _clean_text(text: str) -> str:
    text = _scrub(text).replace("\r\n", "\n").replace("\r", "\n")
    return "\n".join(line.rstrip() for line in text.split("\n")).strip()


# HTML reduction --------------------------------------------------------------------

# inscriptis renders HTML as a browser lays it out (lxml parses it as browsers do, so
# an unclosed <script> or an unterminated tag hides what follows, as on screen; no
# tag or attribute is ever kept). On top of its strict (Firefox-like) profile: lists
# flush left with "- " bullets and a blank line after them, and <blockquote>
# annotated so its lines can be given "> " (the reply's quote is then separated as
# in plain-text mail).
_HTML_CSS = {
    **CSS_PROFILES["strict"],
    "ul": HtmlElement(display=Display.block),
    "ol": HtmlElement(display=Display.block),
}


def _start_bullets(state: HtmlDocumentState, tag: dict) -> None:
    state.li_counter.append("- ")


def _start_numbers(state: HtmlDocumentState, tag: dict) -> None:
    state.li_counter.append(1)


def _end_list(state: HtmlDocumentState) -> None:
    state.li_counter.pop()
    # Set at the end tag, not in the profile: inscriptis gives a block's bottom
    # margin to its children too, which would put a blank line between the items.
    state.tags[-1].margin_after = 1


_HTML_CONFIG = ParserConfig(
    css=_HTML_CSS,
    annotation_rules={"blockquote": ["quote"]},
    custom_html_tag_handler_mapping=CustomHtmlTagHandlerMapping(
        start_tag_mapping={"ul": _start_bullets, "ol": _start_numbers},
        end_tag_mapping={"ul": _end_list, "ol": _end_list},
    ),
)


def html_to_text(html: str, *, problems: list[str] | None = None, where: str = "html") -> str:
    """Reduce HTML to readable plain text (inscriptis): script/style content dropped,
    block elements and <br> become line breaks, entities unescaped, whitespace
    collapsed, and <blockquote> content prefixed with "> " so quote separation still
    works."""
    html = _scrub(html)
    if problems is not None and (fault := _stdlib_fault(html)):
        problems.append(f"{where}: HTML is malformed ({fault}); read as a browser would")
    result = get_annotated_text(html, _HTML_CONFIG)
    text = result.get("text", "").replace("\xa0", " ")
    quotes = [(start, end) for start, end, _label in result.get("label", [])]
    rendered: list[str] = []
    offset = 0
    for line in text.split("\n"):
        end = offset + len(line)
        depth = sum(1 for start, stop in quotes if start < end and stop > offset)
        line = line.strip()
        offset = end + 1
        rendered_line = ("> " * depth + line).rstrip()
        if not line and rendered and rendered[-1] == rendered_line:
            continue  # one blank line (or one bare ">") stands for several
        rendered.append(rendered_line)
    return "\n".join(rendered).strip()


def _stdlib_fault(html: str) -> str | None:
    """Fallback kept for the `problems` list: lxml (and so inscriptis) recovers from any
    input without a word, while the standard library's parser still rejects a few
    broken constructs (an unknown marked section such as `<![x`). Such a message is
    recorded as a problem so a garbled body can be looked into; the text is
    inscriptis's either way."""
    probe = HTMLParser()
    try:
        probe.feed(html)
        probe.close()
    except (AssertionError, ValueError) as exc:
        return str(exc)
    return None


# Headers ---------------------------------------------------------------------------


def _raw_header(message: Message, name: str) -> str | None:
    for key, value in message.raw_items():
        if key.lower() == name.lower():
            return str(value)
    return None


def _header_text(message: Message, name: str, problems: list[str]) -> str:
    raw = _raw_header(message, name)
    if raw is None:
        return ""
    if _has_raw_8bit(raw):
        value = _decode_raw_8bit(raw, f"{name} header", problems)
    else:
        for label in _ENCODED_WORD_CHARSET.findall(raw):
            if _codec_for(label) is None:
                problems.append(f"{name} header: unknown charset {label!r}; characters replaced")
        try:
            value = str(message[name])
        except Exception:  # the stdlib header parser has crashed on hostile input before
            problems.append(f"{name} header cannot be decoded; kept as sent")
            value = raw
    return " ".join(_scrub(value).split())


_SURROGATE = re.compile("[\ud800-\udfff]")


def _scrub(value: str) -> str:
    """Make text storable: PostgreSQL refuses NUL, and UTF-8 encoders refuse the lone
    surrogates that undecodable header bytes (and the utf-7 codec) leave behind."""
    value = value.replace("\x00", "")
    if not _SURROGATE.search(value):
        return value
    try:
        return value.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="replace")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", value)


def _has_raw_8bit(value: str) -> bool:
    """The parser keeps undecoded 8-bit header bytes as lone surrogates."""
    return any("\udc80" <= ch <= "\udcff" for ch in value)


def _decode_raw_8bit(value: str, where: str, problems: list[str]) -> str:
    """Raw 8-bit header text is UTF-8 from modern clients (RFC 6532); anything else is
    almost always a Windows client's code page. The stdlib would only put U+FFFD there."""
    data = value.encode("utf-8", errors="surrogateescape")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        problems.append(f"{where}: raw 8-bit text that is not UTF-8; decoded as windows-1252")
        return data.decode("cp1252", errors="replace")


def _addresses(message: Message, name: str, problems: list[str]) -> list[tuple[str, str]]:
    """(display name, addr-spec) pairs of an address header; raw 8-bit headers and
    headers the strict parser rejects go through the lenient `getaddresses`."""
    raws = [str(value) for key, value in message.raw_items() if key.lower() == name.lower()]
    if not raws:
        return []
    if any(_has_raw_8bit(raw) for raw in raws):
        found = getaddresses([_decode_raw_8bit(raw, f"{name} header", problems) for raw in raws])
    else:
        try:
            found = [
                (str(address.display_name), str(address.addr_spec))
                for header in message.get_all(name) or []
                for address in header.addresses
            ]
        except Exception:  # strict parser crash, or a header kind without .addresses
            found = getaddresses(raws)
    pairs = []
    for display, addr in found:
        addr = _scrub(addr).strip()
        if "@" in addr and not _has_space_or_control(addr):
            pairs.append((" ".join(_scrub(display).split()), addr))
    return pairs


def _date(message: Message, problems: list[str]) -> datetime | None:
    raw = _raw_header(message, "Date")
    if raw is None:
        problems.append("no Date header")
        return None
    try:
        value = parsedate_to_datetime(raw.strip())
    except (ValueError, TypeError, IndexError, OverflowError):
        problems.append("Date header cannot be parsed")
        return None
    # "-0000" means "zone unknown"; the instant is still given in UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _first_id(value: str | None) -> str | None:
    ids = _all_ids(value)
    return ids[0] if ids else None


def _all_ids(value: str | None) -> list[str]:
    """Message ids of a header in order, without brackets or repeats. Ids without
    brackets (some clients omit them) are accepted when they look like local@domain."""
    if not value:
        return []
    value = _scrub(value)
    ids = _BRACKETED_ID.findall(value) or _BARE_ID.findall(value)
    return list(dict.fromkeys(ids))


def _single_id(value: str) -> str | None:
    """One id, bare or bracketed, and nothing else: what goes into a header we write
    must not smuggle in a line break or a second id."""
    value = value.strip()
    if value.startswith("<") and value.endswith(">"):
        value = value[1:-1]
    if not value or "<" in value or ">" in value or _has_space_or_control(value):
        return None
    return value


def _has_space_or_control(value: str) -> bool:
    return any(ch.isspace() or unicodedata.category(ch)[0] == "C" for ch in value)


def _reply_token(
    message: Message,
    recipients: list[tuple[str, str]],
    reply_domain: str | None,
    problems: list[str],
) -> str | None:
    """The token of a reply+<token>@<reply_domain> recipient. Delivered-To and
    X-Original-To are set by our own MTA, so they count even when the sender put the
    reply address in Bcc."""
    if not reply_domain:
        return None
    addresses = [addr for _, addr in recipients]
    for name in ("Delivered-To", "X-Original-To"):
        addresses.extend(addr for _, addr in _addresses(message, name, problems))
    tokens: list[str] = []
    for address in addresses:
        local, _, domain = address.rpartition("@")
        prefix, plus, token = local.partition("+")
        if (
            plus
            and prefix.lower() == "reply"
            and domain.lower() == reply_domain.lower()
            and _REPLY_TOKEN.fullmatch(token)
            and token not in tokens
        ):
            tokens.append(token)
    if len(tokens) > 1:
        problems.append(
            f"{len(tokens)} different reply tokens among the recipients; used the first"
        )
    return tokens[0] if tokens else None


def _is_auto_reply(message: Message) -> bool:
    auto_submitted = (_raw_header(message, "Auto-Submitted") or "").split(";")[0].strip().lower()
    if auto_submitted and auto_submitted != "no":
        return True
    if _raw_header(message, "X-Autoreply") is not None:
        return True
    if _raw_header(message, "X-Autorespond") is not None:
        return True
    precedence = (_raw_header(message, "Precedence") or "").strip().lower()
    return precedence in _AUTO_PRECEDENCE


# Attachments -----------------------------------------------------------------------

_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL"} | {
    f"{port}{n}" for port in ("COM", "LPT") for n in range(1, 10)
}
_UNSAFE_FILENAME_CHARS = re.compile(r'[<>:"|?*]')


def sanitize_filename(name: str, *, fallback: str) -> str:
    """A name safe to show and to store under: no directory part, no control or
    bidi-override characters (which disguise extensions), at most 255 UTF-8 bytes."""
    name = unicodedata.normalize("NFC", name)
    name = re.split(r"[/\\]", name)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    name = _UNSAFE_FILENAME_CHARS.sub("_", name)
    name = " ".join(name.split()).strip(" .")
    if not name:
        return fallback
    stem, dot, extension = name.rpartition(".")
    if not dot:
        stem, extension = name, ""
    if stem.upper() in _WINDOWS_RESERVED:
        stem = f"_{stem}"
    suffix = f".{extension}" if dot else ""
    if len(suffix.encode()) > 32:
        stem, suffix = name, ""
    budget = 255 - len(suffix.encode())
    stem = stem.encode()[:budget].decode("utf-8", errors="ignore")
    return f"{stem}{suffix}"
