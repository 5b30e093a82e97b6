#!/usr/bin/env python3
"""Read every record of a Kafka topic with an independent client (confluent-kafka).

    read_topic.py BOOTSTRAP TOPIC [--timeout SECONDS]

Reads each partition of TOPIC from its low to its high watermark (as they
are when the script starts), without a consumer group, and prints one JSON
object:

    {"topic": "...", "partitions": {"0": [low, high], ...},
     "records": [{"partition": 0, "offset": 5, "timestamp": 1700000000000,
                  "key": "hex" | null, "value": "hex" | null,
                  "headers": [["name", "hex" | null], ...]}, ...]}

Keys, values and header values are hex, so that any bytes (and null, which
Kafka distinguishes from empty) come through exactly. Used by the
dead-letter end-to-end tests to check what Tributary produced without using
Tributary's own Kafka client code.
"""

import argparse
import json
import sys
import time

from confluent_kafka import Consumer, TopicPartition


def hexa(b):
    return None if b is None else b.hex()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bootstrap")
    ap.add_argument("topic")
    ap.add_argument("--timeout", type=float, default=60.0)
    args = ap.parse_args()

    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": "read-topic-py",  # required by the client; never joined
            "enable.auto.commit": False,
            "enable.partition.eof": False,
        }
    )
    meta = consumer.list_topics(args.topic, timeout=args.timeout)
    topic = meta.topics.get(args.topic)
    if topic is None or topic.error is not None:
        print(f"topic {args.topic!r} not found: {topic and topic.error}", file=sys.stderr)
        return 2
    marks = {}
    assignment = []
    for p in sorted(topic.partitions):
        low, high = consumer.get_watermark_offsets(
            TopicPartition(args.topic, p), timeout=args.timeout
        )
        marks[p] = (low, high)
        if high > low:
            assignment.append(TopicPartition(args.topic, p, low))
    records = []
    remaining = sum(h - l for l, h in marks.values())
    if assignment:
        consumer.assign(assignment)
    deadline = time.monotonic() + args.timeout
    seen = set()
    while remaining > 0:
        if time.monotonic() > deadline:
            print(f"timed out with {remaining} records unread", file=sys.stderr)
            return 1
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            print(f"read error: {msg.error()}", file=sys.stderr)
            return 1
        p, o = msg.partition(), msg.offset()
        if o >= marks[p][1] or (p, o) in seen:
            continue
        seen.add((p, o))
        remaining -= 1
        ts_type, ts = msg.timestamp()
        records.append(
            {
                "partition": p,
                "offset": o,
                "timestamp": ts if ts_type != 0 else None,
                "key": hexa(msg.key()),
                "value": hexa(msg.value()),
                "headers": [[k, hexa(v)] for k, v in (msg.headers() or [])],
            }
        )
    consumer.close()
    records.sort(key=lambda r: (r["partition"], r["offset"]))
    print(
        json.dumps(
            {
                "topic": args.topic,
                "partitions": {str(p): list(m) for p, m in marks.items()},
                "records": records,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
