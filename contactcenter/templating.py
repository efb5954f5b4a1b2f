"""Strict $placeholder templates for messages staff and the system send
(canned responses, reminders, auto-replies): a template that could not render
is refused when it is saved, never sent half-filled."""

import string
from collections.abc import Mapping


def template_placeholders(template: str) -> set[str]:
    """The $name and ${name} placeholders of template.

    Raises ValueError for a "$" that starts no placeholder (write "$$" for a literal
    dollar sign), so a template that could not render is refused when it is saved.
    """
    parsed = string.Template(template)
    for match in parsed.pattern.finditer(template):
        if match.group("invalid") is not None:
            position = match.start()
            line = template.count("\n", 0, position) + 1
            column = position - template.rfind("\n", 0, position)
            raise ValueError(
                f"invalid placeholder at line {line}, column {column}: "
                f"{template[position : position + 12]!r}; write $$ for a literal dollar sign"
            )
    return set(parsed.get_identifiers())


def render_template(template: str, context: Mapping[str, object]) -> str:
    """Fill $name and ${name} from context; ValueError names every placeholder that
    context lacks (and rejects a stray "$", see template_placeholders)."""
    missing = template_placeholders(template) - set(context)
    if missing:
        names = ", ".join(f"${name}" for name in sorted(missing))
        raise ValueError(f"unknown placeholder(s) in template: {names}")
    return string.Template(template).substitute(context)
