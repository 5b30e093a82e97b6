#!/usr/bin/env python3
"""Read a Parquet lake with two independent readers and print what they see.

    read_lake.py LOCATION --id-column COLUMN [--endpoint URL --region REGION]

LOCATION is a directory, a file:// URL or an s3://bucket/prefix URL. Every
file below it is read, except those with a path component (relative to
LOCATION) starting with "_" or "." (the _tributary/ commit log, temporary
files). For S3, credentials come from AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY (or --access-key/--secret-key); --endpoint is the
server's URL (http://127.0.0.1:PORT), requests are path-style.

pyarrow reads the files through pyarrow.fs (local or S3FileSystem). duckdb
reads them independently with read_parquet(): local files directly; S3 files
through its httpfs extension only if that extension is already installed,
because installing it downloads from extensions.duckdb.org, which offline
machines cannot reach. Otherwise the S3 files are first copied to a temporary
directory (with pyarrow's S3 client) and duckdb reads the copies
("source": "local-copy").

Prints one JSON object (pyarrow's figures at the top level):

    {"rows": N, "distinct_ids": N, "null_ids": N, "min_id": ..., "max_id": ...,
     "files": N, "schema": {"col": "type", ...}, "nullable": {"col": bool, ...},
     "duckdb": {"rows": N, "distinct_ids": N, "min_id": ..., "max_id": ...,
                "source": "local" | "local-copy" | "httpfs"},
     "agree": true}

Exit status 0 when both readers agree on rows, distinct ids, min and max;
3 when they disagree (the JSON is still printed); other non-zero on errors.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
from urllib.parse import urlparse

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pyarrow.dataset as ds
from pyarrow import fs as pafs


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("location", help="directory, file:// URL or s3://bucket/prefix")
    parser.add_argument("--id-column", required=True, help="column whose ids are counted")
    parser.add_argument("--endpoint", help="S3 endpoint URL, e.g. http://127.0.0.1:8333")
    parser.add_argument("--region", default=os.environ.get("AWS_REGION", "us-east-1"))
    parser.add_argument("--access-key", default=os.environ.get("AWS_ACCESS_KEY_ID"))
    parser.add_argument("--secret-key", default=os.environ.get("AWS_SECRET_ACCESS_KEY"))
    return parser.parse_args()


def open_location(args):
    """Returns (filesystem, base path inside it, s3 settings or None)."""
    url = urlparse(args.location)
    if url.scheme == "s3":
        endpoint = urlparse(args.endpoint) if args.endpoint else None
        s3 = pafs.S3FileSystem(
            access_key=args.access_key,
            secret_key=args.secret_key,
            region=args.region,
            endpoint_override=endpoint.netloc if endpoint else None,
            scheme=endpoint.scheme if endpoint else "https",
            allow_bucket_creation=False,
            allow_bucket_deletion=False,
        )
        base = (url.netloc + "/" + url.path.strip("/")).rstrip("/")
        return s3, base, {"endpoint": endpoint, "args": args}
    if url.scheme == "file":
        return pafs.LocalFileSystem(), os.path.abspath(url.path), None
    if url.scheme:
        sys.exit(f"read_lake.py: unsupported location {args.location!r}")
    return pafs.LocalFileSystem(), os.path.abspath(args.location), None


def list_data_files(filesystem, base):
    selector = pafs.FileSelector(base, recursive=True, allow_not_found=True)
    files = []
    for info in filesystem.get_file_info(selector):
        if info.type != pafs.FileType.File:
            continue
        relative = info.path[len(base):].lstrip("/")
        if any(part.startswith(("_", ".")) for part in relative.split("/")):
            continue
        files.append(info.path)
    return sorted(files)


def jsonable(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def read_with_pyarrow(filesystem, files, id_column):
    if not files:
        return {"rows": 0, "distinct_ids": 0, "null_ids": 0, "min_id": None, "max_id": None,
                "files": 0, "schema": {}, "nullable": {}}
    # Files of one table may differ by added nullable columns and widened
    # types (README "Schema evolution"): read them with the merged schema,
    # not the first file's.
    schema = pa.unify_schemas(
        [pq.read_schema(f, filesystem=filesystem) for f in files],
        promote_options="permissive",
    )
    dataset = ds.dataset(files, filesystem=filesystem, format="parquet", schema=schema)
    ids = dataset.to_table(columns=[id_column]).column(id_column)
    min_max = pc.min_max(ids)
    return {
        "rows": dataset.count_rows(),
        "distinct_ids": pc.count_distinct(ids, mode="only_valid").as_py(),
        "null_ids": ids.null_count,
        "min_id": jsonable(min_max["min"].as_py()),
        "max_id": jsonable(min_max["max"].as_py()),
        "files": len(files),
        "schema": {field.name: str(field.type) for field in dataset.schema},
        "nullable": {field.name: field.nullable for field in dataset.schema},
    }


def quote_ident(name):
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text):
    return "'" + text.replace("'", "''") + "'"


def duckdb_has_httpfs(con):
    row = con.execute(
        "SELECT installed FROM duckdb_extensions() WHERE extension_name = 'httpfs'"
    ).fetchone()
    return bool(row and row[0])


def read_with_duckdb(filesystem, files, id_column, s3):
    con = duckdb.connect()
    # Never reach for the network to fetch an extension.
    con.execute("SET autoinstall_known_extensions = false")
    if not files:
        return {"rows": 0, "distinct_ids": 0, "min_id": None, "max_id": None,
                "source": "local" if s3 is None else "none"}
    tmp = None
    try:
        if s3 is None:
            paths, source = files, "local"
        elif duckdb_has_httpfs(con):
            endpoint, args = s3["endpoint"], s3["args"]
            con.execute("LOAD httpfs")
            con.execute(
                "CREATE SECRET lake (TYPE s3, KEY_ID {}, SECRET {}, REGION {}, ENDPOINT {}, "
                "URL_STYLE 'path', USE_SSL {})".format(
                    quote_literal(args.access_key or ""),
                    quote_literal(args.secret_key or ""),
                    quote_literal(args.region),
                    quote_literal(endpoint.netloc if endpoint else "s3.amazonaws.com"),
                    "false" if endpoint and endpoint.scheme == "http" else "true",
                )
            )
            paths, source = ["s3://" + f for f in files], "httpfs"
        else:
            tmp = tempfile.mkdtemp(prefix="read_lake-")
            paths = []
            for i, path in enumerate(files):
                local = os.path.join(tmp, f"{i:06}.parquet")
                with filesystem.open_input_stream(path) as src, open(local, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                paths.append(local)
            source = "local-copy"
        column = quote_ident(id_column)
        file_list = "[" + ", ".join(quote_literal(p) for p in paths) + "]"
        rows, distinct, low, high = con.execute(
            f"SELECT count(*), count(DISTINCT {column}), min({column}), max({column}) "
            f"FROM read_parquet({file_list}, union_by_name = true)"
        ).fetchone()
        return {"rows": rows, "distinct_ids": distinct, "min_id": jsonable(low),
                "max_id": jsonable(high), "source": source}
    finally:
        con.close()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


def main():
    args = parse_args()
    filesystem, base, s3 = open_location(args)
    files = list_data_files(filesystem, base)
    result = read_with_pyarrow(filesystem, files, args.id_column)
    result["duckdb"] = read_with_duckdb(filesystem, files, args.id_column, s3)
    keys = ("rows", "distinct_ids", "min_id", "max_id")
    result["agree"] = all(result[k] == result["duckdb"][k] for k in keys)
    print(json.dumps(result, sort_keys=True))
    if not result["agree"]:
        print("read_lake.py: pyarrow and duckdb disagree", file=sys.stderr)
        sys.exit(3)


if __name__ == "__main__":
    main()
