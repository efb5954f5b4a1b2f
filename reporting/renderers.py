"""The KPI report as CSV: one row per interval, then one for the whole period."""

import csv
import io

from rest_framework.renderers import BaseRenderer


def flatten(figures, prefix=""):
    """{"calls": {"offered": 3}} -> {"calls.offered": 3}, in the report's order."""
    flat = {}
    for key, value in figures.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, prefix=f"{name}."))
        else:
            flat[name] = value
    return flat


def report_rows(report):
    """(header, rows) of a serialised KPI report."""
    rows = [{"scope": "interval", **flatten(figures)} for figures in report["intervals"]]
    rows.append({"scope": "period", **flatten(report["period"])})
    return list(rows[-1]), rows


class KpiCsvRenderer(BaseRenderer):
    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        header, rows = report_rows(data)
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=header, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({key: "" if value is None else value for key, value in row.items()})
        return out.getvalue().encode(self.charset)
