"""Month partitioning of interactions and audit rows, prototyped on a copy.

Copies the bench database (CREATE DATABASE ... TEMPLATE), then in the copy: measures
the bytes per interaction and per audit row as stored (table, TOAST and indexes),
builds `channels_app_interaction` and `compliance_auditevent` again as tables
partitioned by month (RANGE on occurred_at / recorded_at, the same columns and
indexes), moves the rows in, and times a month's retention both ways: DELETE of the
month's rows against DROP of its partition. Nothing touches the source database;
the copy is dropped at the end (`--keep` keeps it).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/cc_bench_ingest \\
        .venv/bin/python bench/partitioning.py [--keep]
"""

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import setup_django  # noqa: E402

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/cc_bench_ingest"
TABLES = (
    ("channels_app_interaction", "occurred_at"),
    ("channels_app_rawevent", "received_at"),
    ("compliance_auditevent", "recorded_at"),
)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    setup_django(DEFAULT_DATABASE_URL)
    import psycopg
    from django.conf import settings
    from psycopg import sql

    from bench.common import _connection_params

    source = settings.DATABASES["default"]["NAME"]
    copy = f"{source}_partitions"
    with psycopg.connect(**_connection_params("postgres"), autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(copy)))
        admin.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(copy), sql.Identifier(source)
            )
        )
    try:
        with psycopg.connect(**_connection_params(copy), autocommit=True) as conn:
            # The audit trail refuses DELETE and TRUNCATE (its trigger); this session may.
            conn.execute("SET compliance.allow_truncate = on")
            for table, column in TABLES:
                prototype(conn, sql, table, column)
    finally:
        if not args.keep:
            with psycopg.connect(**_connection_params("postgres"), autocommit=True) as admin:
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(copy)))


def prototype(conn, sql, table, column):
    import psycopg

    rows = conn.execute(
        sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
    ).fetchone()[0]
    total = conn.execute("SELECT pg_total_relation_size(%s)", [table]).fetchone()[0]
    heap = conn.execute("SELECT pg_table_size(%s)", [table]).fetchone()[0]
    print(
        f"{table}: {rows:,} rows, {total / max(rows, 1):,.0f} bytes a row with its indexes "
        f"({heap / max(rows, 1):,.0f} table and TOAST)"
    )
    if not rows:
        return
    months = conn.execute(
        sql.SQL(
            "SELECT DISTINCT date_trunc('month', {c} AT TIME ZONE 'UTC') FROM {t} ORDER BY 1"
        ).format(c=sql.Identifier(column), t=sql.Identifier(table))
    ).fetchall()
    parted = f"{table}_by_month"
    started = time.perf_counter()
    # Same columns, defaults and indexes; a partitioned table's unique indexes must
    # contain the partition key, so they are left to the migration path (README).
    conn.execute(
        sql.SQL(
            "CREATE TABLE {p} (LIKE {t} INCLUDING DEFAULTS INCLUDING GENERATED) "
            "PARTITION BY RANGE ({c})"
        ).format(p=sql.Identifier(parted), t=sql.Identifier(table), c=sql.Identifier(column))
    )
    for (month,) in months:
        name = f"{parted}_{month:%Y_%m}"
        # DDL takes no parameters: the bounds are literals.
        conn.execute(
            sql.SQL("CREATE TABLE {n} PARTITION OF {p} FOR VALUES FROM ({a}) TO ({b})").format(
                n=sql.Identifier(name),
                p=sql.Identifier(parted),
                a=sql.Literal(month.isoformat() + "+00"),
                b=sql.Literal(next_month(month).isoformat() + "+00"),
            )
        )
    conn.execute(
        sql.SQL("CREATE INDEX ON {p} ({c})").format(
            p=sql.Identifier(parted), c=sql.Identifier(column)
        )
    )
    conn.execute(
        sql.SQL("INSERT INTO {p} SELECT * FROM {t}").format(
            p=sql.Identifier(parted), t=sql.Identifier(table)
        )
    )
    moved = time.perf_counter() - started
    first = months[0][0]
    oldest = f"{parted}_{first:%Y_%m}"
    in_oldest = conn.execute(
        sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(oldest))
    ).fetchone()[0]
    started = time.perf_counter()
    conn.execute("BEGIN")
    try:
        conn.execute(
            sql.SQL("DELETE FROM {t} WHERE {c} < %s").format(
                t=sql.Identifier(table), c=sql.Identifier(column)
            ),
            [next_month(first).isoformat() + "+00"],
        )
        deleted = f"{(time.perf_counter() - started) * 1000:.1f} ms (rolled back)"
    except psycopg.errors.RaiseException:
        # The audit trail's trigger refuses DELETE: dropping partitions is its only way.
        deleted = "refused by the append-only trigger"
    conn.execute("ROLLBACK")
    started = time.perf_counter()
    conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(oldest)))
    dropped = time.perf_counter() - started
    print(
        f"  {len(months)} month partitions, rows moved in {moved:.2f} s; the oldest month "
        f"({in_oldest:,} rows): DELETE {deleted} against DROP "
        f"of its partition {dropped * 1000:.1f} ms"
    )


def next_month(month):
    return (
        month.replace(year=month.year + 1, month=1)
        if month.month == 12
        else month.replace(month=month.month + 1)
    )


if __name__ == "__main__":
    main()
