#!/usr/bin/env python3
"""Read every row of a Parquet lake with two independent readers.

    read_rows.py DIRECTORY

pyarrow reads DIRECTORY as a dataset (files under a path component starting
with "_" or "." are not read: commit log, dead letters); DuckDB reads
DIRECTORY/**/*.parquet outside those directories. Values are made
comparable: timestamps as epoch milliseconds, decimals as text.

Prints one JSON object:

    {"schema": {"<column>": "<pyarrow type>", ...},
     "nullable": {"<column>": true | false, ...},
     "pyarrow": [{"<column>": value, ...}, ...],
     "duckdb": [...the same rows, the same order...]}

Rows are sorted by their first column.
"""

import datetime
import decimal
import glob
import json
import os
import sys

import duckdb
import pyarrow.dataset as ds


def plain(value):
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        return int(value.timestamp() * 1000)
    if isinstance(value, decimal.Decimal):
        return str(value)
    return value


def main():
    base = os.path.abspath(sys.argv[1])
    dataset = ds.dataset(base, format="parquet")
    table = dataset.to_table()
    schema = {f.name: str(f.type) for f in table.schema}
    nullable = {f.name: f.nullable for f in table.schema}
    first = table.schema.names[0]
    rows = [{k: plain(v) for k, v in r.items()} for r in table.to_pylist()]
    rows.sort(key=lambda r: r[first])

    files = [
        f
        for f in glob.glob(os.path.join(base, "**", "*.parquet"), recursive=True)
        if not any(
            part.startswith(("_", "."))
            for part in os.path.relpath(f, base).split(os.sep)
        )
    ]
    con = duckdb.connect()
    source = "read_parquet([" + ", ".join("'%s'" % f.replace("'", "''") for f in files) + "])"
    columns = con.execute("DESCRIBE SELECT * FROM " + source).fetchall()
    select = []
    for name, kind, *_ in columns:
        quoted = '"%s"' % name.replace('"', '""')
        if kind.startswith("TIMESTAMP"):
            select.append("epoch_ms(%s) AS %s" % (quoted, quoted))
        elif kind.startswith("DECIMAL"):
            select.append("CAST(%s AS VARCHAR) AS %s" % (quoted, quoted))
        else:
            select.append(quoted)
    cursor = con.execute(
        "SELECT %s FROM %s ORDER BY 1" % (", ".join(select), source)
    )
    names = [d[0] for d in cursor.description]
    duck = [{n: plain(v) for n, v in zip(names, r)} for r in cursor.fetchall()]

    json.dump(
        {"schema": schema, "nullable": nullable, "pyarrow": rows, "duckdb": duck},
        sys.stdout,
    )


if __name__ == "__main__":
    main()
