"""``riverbed tail TOPIC``: pretty-print a topic's records (no consumer group)."""

from __future__ import annotations

import sys
from typing import TextIO

import orjson
from aiokafka import AIOKafkaConsumer

from riverbed.config import Settings

__all__ = ["format_record", "tail"]


def format_record(
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    headers: list[tuple[str, bytes]] | None = None,
) -> str:
    """One readable line (plus indented headers, when there are any).

    Examples
    --------
    >>> print(format_record(0, 7, b"k", b'{"id":"a","y_pred":true}'))
    p0@7 key=k {"id":"a","y_pred":true}
    >>> print(format_record(1, 2, None, b"oops", [("riverbed.stage", b"deserialize")]))
    p1@2 key=- b'oops'
        riverbed.stage: deserialize

    """
    k = "-" if key is None else key.decode(errors="replace")
    try:
        body = orjson.dumps(orjson.loads(value)).decode() if value is not None else "null"
    except orjson.JSONDecodeError:
        body = repr(value)
    lines = [f"p{partition}@{offset} key={k} {body}"]
    for name, hv in headers or ():
        lines.append(f"    {name}: {hv.decode(errors='replace')}")
    return "\n".join(lines)


async def tail(
    settings: Settings,
    topic: str,
    *,
    from_beginning: bool = True,
    limit: int | None = None,
    idle_timeout: float | None = None,
    out: TextIO = sys.stdout,
) -> int:
    """Print records of ``topic``; stop after ``limit`` records or ``idle_timeout`` idle s."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest" if from_beginning else "latest",
    )
    await consumer.start()
    seen = 0
    try:
        if topic not in await consumer.topics():
            print(f"riverbed: topic {topic!r} does not exist", file=sys.stderr)
            return 0
        # No group: subscribing without a group_id assigns every partition to us.
        consumer.subscribe([topic])
        while limit is None or seen < limit:
            timeout_ms = int((idle_timeout or 1.0) * 1000)
            batch = await consumer.getmany(timeout_ms=timeout_ms, max_records=500)
            if not batch and idle_timeout is not None:
                break
            for records in batch.values():
                for r in records:
                    print(
                        format_record(r.partition, r.offset, r.key, r.value, list(r.headers or ())),
                        file=out,
                        flush=True,
                    )
                    seen += 1
                    if limit is not None and seen >= limit:
                        return seen
    finally:
        await consumer.stop()
    return seen
