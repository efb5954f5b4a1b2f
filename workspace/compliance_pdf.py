"""The patient access report as a PDF a patient can be handed, drawn with fpdf2
(pure Python; see the README's dependencies for why). Built in memory: a
patient's six years of accesses are thousands of rows at most, a few hundred KB.

The PDF's built-in fonts cover Latin-1 only; other characters (a reason typed
in another script) print as "?" rather than failing the report."""

from django.utils import timezone
from fpdf import FPDF
from fpdf.fonts import FontFace

COLUMNS = (
    ("When", 34),
    ("Who", 38),
    ("Role", 22),
    ("What", 30),
    ("Record", 34),
    ("Through", 42),
    ("Why", 60),
    ("Outcome", 17),
)


def _latin1(text):
    return str(text).encode("latin-1", "replace").decode("latin-1")


def _when(value):
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M")


def _why(row):
    reason = row.get("break_glass_reason")
    if reason:
        return f"{row['purpose']}. Emergency access, reason given: {reason}"
    return row["purpose"]


def _who(row):
    if row.get("actor_username"):
        return row["actor_username"]
    if row.get("api_client_name"):
        return f"API key {row['api_client_name']}"
    return "System"


def access_report_pdf(*, patient_id, since, until, rows, practice, prepared_by):
    pdf = FPDF(orientation="landscape", unit="mm", format="A4")
    pdf.set_title(_latin1(f"Access report for patient {patient_id}"))
    pdf.set_author(_latin1(practice))
    pdf.set_auto_page_break(auto=True, margin=12)
    pdf.add_page()
    pdf.set_font("helvetica", "B", 15)
    pdf.cell(0, 9, _latin1(f"{practice}: who accessed your record"), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("helvetica", "", 10)
    period = "the last six years"
    if since or until:
        period = f"{_when(since) if since else 'the start'} to {_when(until) if until else 'now'}"
    for line in (
        f"Patient id: {patient_id}",
        f"Period: {period} (times in {timezone.get_current_timezone_name()})",
        f"Prepared {_when(timezone.now())} by {prepared_by}.",
        "Each line is one access to your record: when, by whom, what, through which "
        "system and why.",
    ):
        pdf.cell(0, 6, _latin1(line), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)
    pdf.set_font("helvetica", "", 8)
    count = 0
    with pdf.table(
        col_widths=tuple(width for _, width in COLUMNS),
        headings_style=FontFace(emphasis="BOLD", fill_color=(230, 230, 230)),
        line_height=4.5,
        text_align="LEFT",
        repeat_headings=1,
    ) as table:
        heading = table.row()
        for title, _ in COLUMNS:
            heading.cell(title)
        for row in rows:
            count += 1
            cells = table.row()
            for value in (
                _when(row["recorded_at"]),
                _who(row),
                row.get("actor_role") or "",
                row["action_word"],
                f"{row['resource_type']} {row['resource_id']}".strip(),
                f"{row['channel']} {row.get('path') or ''}".strip(),
                _why(row),
                row["outcome"],
            ):
                cells.cell(_latin1(value))
    pdf.ln(3)
    pdf.set_font("helvetica", "", 10)
    pdf.cell(0, 6, _latin1(f"{count} accesses."), new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())
