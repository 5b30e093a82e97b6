#!/usr/bin/env python3
"""B2 of `tributary bench`: what a user would otherwise write.

Consumes a topic in batches with confluent-kafka, decodes each payload with
`json.loads`, builds a pyarrow table per flush, writes it with
`pq.write_table` (zstd, like Tributary's default) and commits the offsets
after the file is written. Stops after --records records.

Speaks the bench's line protocol on stdout:
  progress <consumed>
  result {"records": .., "bytes": .., "seconds": .., "cpu_s": .., "peak_rss": ..}
"""

import argparse
import json
import os
import resource
import sys
import time

import pyarrow as pa
import pyarrow.parquet as pq
from confluent_kafka import Consumer, KafkaError


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--records", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--report-every", type=int, default=10000)
    ap.add_argument("--flush-records", type=int, default=1000000)
    ap.add_argument("--batch", type=int, default=10000)
    ap.add_argument("--fetch-wait-max-ms", type=int, default=500)
    args = ap.parse_args()

    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": args.group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
            # Same as the bench's other consumers (see FETCH_WAIT_MAX_MS in measure.rs).
            "fetch.wait.max.ms": args.fetch_wait_max_ms,
        }
    )
    consumer.subscribe([args.topic])
    os.makedirs(args.out, exist_ok=True)

    consumed = 0
    payload_bytes = 0
    reported = 0
    first = None
    rows = []
    files = 0

    def flush():
        nonlocal rows, files
        if not rows:
            return
        table = pa.Table.from_pylist(rows)
        pq.write_table(table, os.path.join(args.out, f"part-{files:05}.parquet"), compression="zstd")
        files += 1
        rows = []
        consumer.commit(asynchronous=False)

    while consumed < args.records:
        msgs = consumer.consume(num_messages=args.batch, timeout=0.1)
        for m in msgs:
            err = m.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                print(f"consumer error: {err}", file=sys.stderr)
                continue
            if first is None:
                first = time.monotonic()
            value = m.value()
            payload_bytes += len(value)
            rows.append(json.loads(value))
            consumed += 1
        if len(rows) >= args.flush_records:
            flush()
        if consumed - reported >= args.report_every:
            reported = consumed
            print(f"progress {consumed}", flush=True)
    flush()
    end = time.monotonic()
    print(f"progress {consumed}", flush=True)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result = {
        "records": consumed,
        "bytes": payload_bytes,
        "seconds": end - (first if first is not None else end),
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss": peak_rss(usage),
    }
    print("result " + json.dumps(result), flush=True)
    consumer.close()


def peak_rss(usage):
    """Peak RSS of this process image, in bytes.

    VmHWM belongs to the address space, which exec replaces; ru_maxrss is
    carried over from the process that forked us, so a large parent would
    set its floor.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return usage.ru_maxrss * 1024


if __name__ == "__main__":
    main()
