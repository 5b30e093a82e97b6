#!/usr/bin/env python3
"""Read a local Parquet lake whose files differ by added nullable columns and
widened types, with pyarrow and with DuckDB, and print what each sees.

    read_evolution.py DIRECTORY --id-column COLUMN

Every *.parquet file below DIRECTORY is read, except those with a path
component starting with "_" or "." (the _tributary/ commit log, dead-letter
files). pyarrow merges the files' schemas with
pyarrow.unify_schemas(..., promote_options="permissive") and reads them as one
dataset with that schema; DuckDB reads them with
read_parquet([...], union_by_name = true). Both are the ways README
"Schema evolution" tells readers to use.

Prints one JSON object:

    {"files": N, "file_schemas": K,
     "pyarrow": {"schema": {"col": "type", ...}, "rows": [[v, ...], ...]},
     "duckdb":  {"schema": {"col": "type", ...}, "rows": [[v, ...], ...]}}

"rows" hold every row, columns in pyarrow's unified order, sorted by the id
column; values are JSON values (numbers, strings, null).
"""

import argparse
import json
import os

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq


def data_files(base):
    files = []
    for root, dirs, names in os.walk(base):
        dirs[:] = [d for d in dirs if not d.startswith(("_", "."))]
        files.extend(
            os.path.join(root, n)
            for n in names
            if n.endswith(".parquet") and not n.startswith(("_", "."))
        )
    return sorted(files)


def plain(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory")
    parser.add_argument("--id-column", required=True)
    args = parser.parse_args()
    files = data_files(os.path.abspath(args.directory))
    schemas = [pq.read_schema(f) for f in files]
    unified = pa.unify_schemas(schemas, promote_options="permissive")
    columns = unified.names

    table = ds.dataset(files, schema=unified, format="parquet").to_table()
    table = table.sort_by(args.id_column)
    pyarrow_rows = [[plain(v) for v in row.values()] for row in table.to_pylist()]

    con = duckdb.connect()
    con.execute("SET autoinstall_known_extensions = false")
    file_list = "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "]"
    select = ", ".join('"' + c.replace('"', '""') + '"' for c in columns)
    id_column = '"' + args.id_column.replace('"', '""') + '"'
    relation = con.sql(
        f"SELECT {select} FROM read_parquet({file_list}, union_by_name = true) ORDER BY {id_column}"
    )
    duckdb_schema = {name: str(t) for name, t in zip(relation.columns, relation.types)}
    duckdb_rows = [[plain(v) for v in row] for row in relation.fetchall()]
    con.close()

    distinct = {s.to_string(show_schema_metadata=False) for s in schemas}
    print(json.dumps({
        "files": len(files),
        "file_schemas": len(distinct),
        "pyarrow": {"schema": {f.name: str(f.type) for f in unified}, "rows": pyarrow_rows},
        "duckdb": {"schema": duckdb_schema, "rows": duckdb_rows},
    }))


if __name__ == "__main__":
    main()
