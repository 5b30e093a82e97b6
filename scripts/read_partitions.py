#!/usr/bin/env python3
"""Read a Hive-partitioned Parquet lake with two independent readers and
print, per row id, the partition values each reader decodes from the paths.

    read_partitions.py LOCATION --id-column COLUMN --keys KEY[,KEY...]
                       [--endpoint URL --region REGION]

LOCATION is a directory, a file:// URL or an s3://bucket/prefix URL (S3 as
in read_lake.py: credentials from AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY, path-style requests to --endpoint).

pyarrow reads it as a dataset with Hive partitioning (the KEYs as strings,
percent-escapes decoded, __HIVE_DEFAULT_PARTITION__ as null). DuckDB reads
LOCATION/**/*.parquet with hive_partitioning=true and no type inference; an
S3 lake is first copied, object names unchanged, to a temporary directory
with pyarrow's S3 client (DuckDB's httpfs extension is not assumed). Where a
file also holds a column named like a KEY, both readers take the value from
the path. Files under a directory starting with "_" or "." (the commit log,
dead letters) are not read.

Prints one JSON object:

    {"pyarrow": {"<id>": {"<key>": "value" | null, ...}, ...},
     "duckdb": {...the same...},
     "rows": {"pyarrow": N, "duckdb": N},
     "duplicates": {"pyarrow": [ids seen twice], "duckdb": [...]}}
"""

import argparse
import json
import os
import shutil
import tempfile

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds

# The sibling script: opening local and S3 locations, listing data files.
from read_lake import list_data_files, open_location


def collect(rows, id_column, keys):
    out, duplicates = {}, []
    for row in rows:
        key = str(row[id_column])
        if key in out:
            duplicates.append(key)
        out[key] = {k: row[k] for k in keys}
    return out, duplicates


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("location", help="directory, file:// URL or s3://bucket/prefix")
    parser.add_argument("--id-column", required=True)
    parser.add_argument("--keys", required=True, help="partition keys, comma-separated")
    parser.add_argument("--endpoint", help="S3 endpoint URL, e.g. http://127.0.0.1:8333")
    parser.add_argument("--region", default=os.environ.get("AWS_REGION", "us-east-1"))
    parser.add_argument("--access-key", default=os.environ.get("AWS_ACCESS_KEY_ID"))
    parser.add_argument("--secret-key", default=os.environ.get("AWS_SECRET_ACCESS_KEY"))
    return parser.parse_args()


def main():
    args = parse_args()
    filesystem, base, s3 = open_location(args)
    keys = args.keys.split(",")
    columns = [args.id_column] + keys

    partitioning = ds.partitioning(
        pa.schema([(k, pa.string()) for k in keys]), flavor="hive"
    )
    table = ds.dataset(
        base, filesystem=filesystem, format="parquet", partitioning=partitioning
    ).to_table(columns=columns)
    pa_rows, pa_dups = collect(table.to_pylist(), args.id_column, keys)

    tmp = None
    try:
        local = base
        if s3 is not None:
            tmp = tempfile.mkdtemp(prefix="read_partitions-")
            for path in list_data_files(filesystem, base):
                relative = path[len(base):].lstrip("/")
                target = os.path.join(tmp, relative)
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with filesystem.open_input_stream(path) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
            local = tmp
        selected = ", ".join(
            [f'"{args.id_column}"'] + [f'CAST("{k}" AS VARCHAR) AS "{k}"' for k in keys]
        )
        glob = os.path.join(local, "**", "*.parquet").replace("'", "''")
        con = duckdb.connect()
        con.execute("SET autoinstall_known_extensions = false")
        result = con.execute(
            f"SELECT {selected} FROM read_parquet('{glob}', hive_partitioning=true, "
            "hive_types_autocast=false)"
        )
        names = [d[0] for d in result.description]
        duck_rows, duck_dups = collect(
            (dict(zip(names, r)) for r in result.fetchall()), args.id_column, keys
        )
        con.close()
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    print(
        json.dumps(
            {
                "pyarrow": pa_rows,
                "duckdb": duck_rows,
                "rows": {
                    "pyarrow": table.num_rows,
                    "duckdb": len(duck_rows) + len(duck_dups),
                },
                "duplicates": {"pyarrow": pa_dups, "duckdb": duck_dups},
            },
            ensure_ascii=False,
        )
    )


if __name__ == "__main__":
    main()
