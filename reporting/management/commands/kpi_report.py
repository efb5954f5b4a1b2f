from datetime import date

from django.core.management.base import BaseCommand, CommandError

from contactcenter.models import Team
from contactcenter.replica import replica_reads
from patients.models import Channel
from reporting.renderers import flatten
from reporting.selectors import INTERVALS, kpi_report
from reporting.serializers import KpiReportSerializer


def _date(value):
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise CommandError(f"{value!r} is not a date (YYYY-MM-DD).") from exc


def _team(value):
    found = Team.objects.filter(pk=int(value)).first() if value.isdigit() else None
    found = found or Team.objects.filter(name=value).first()
    if found is None:
        raise CommandError(f"No team {value!r}.")
    return found


def _cell(value):
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}".rstrip("0").rstrip(".")
    return str(value)


class Command(BaseCommand):
    help = (
        "Print the contact-center KPIs of a period as a table (definitions: "
        "reporting/METRICS.md). Every team unless --team is given."
    )

    def add_arguments(self, parser):
        parser.add_argument("--since", required=True, type=_date, help="First day, YYYY-MM-DD.")
        parser.add_argument("--until", required=True, type=_date, help="Last day, inclusive.")
        parser.add_argument("--team", help="A team id or name.")
        parser.add_argument("--channel", choices=Channel.values)
        parser.add_argument(
            "--interval", choices=INTERVALS, help="Also show a column per day or week."
        )

    def handle(self, *args, since, until, team, channel, interval, **options):
        if since > until:
            raise CommandError("--since must not be after --until.")
        team_ids = [_team(team).pk] if team else None
        with replica_reads():
            report = KpiReportSerializer(
                kpi_report(
                    since=since,
                    until=until,
                    team_ids=team_ids,
                    channel=channel,
                    interval=interval or "day",
                )
            ).data
        columns = [report["period"]]
        titles = [f"{since}..{until}"]
        if interval:
            columns = [*report["intervals"], report["period"]]
            titles = [str(figures["start"]) for figures in report["intervals"]] + ["period"]
        figures = [
            flatten({key: value for key, value in column.items() if key not in ("start", "end")})
            for column in columns
        ]
        self._table(titles, figures)
        sources = report["sources"]
        partly = ""
        if sources["partly_rolled_up_days"]:
            partly = f" (today's rollup ends at {sources['rolled_up_until']}, the rest is live)"
        self.stdout.write(
            f"\n{sources['rolled_up_days']} day(s) from rollups, {sources['live_days']} live"
            f"{partly}; days in {report['time_zone']}; definitions in reporting/METRICS.md."
        )

    def _table(self, titles, columns):
        names = list(columns[0])
        cells = [[_cell(column[name]) for column in columns] for name in names]
        name_width = max(len(name) for name in names)
        widths = [
            max(len(title), *(len(row[i]) for row in cells)) for i, title in enumerate(titles)
        ]
        header = (
            "metric".ljust(name_width)
            + "  "
            + "  ".join(title.rjust(width) for title, width in zip(titles, widths, strict=True))
        )
        self.stdout.write(header)
        self.stdout.write("-" * len(header))
        for name, row in zip(names, cells, strict=True):
            self.stdout.write(
                name.ljust(name_width)
                + "  "
                + "  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True))
            )
