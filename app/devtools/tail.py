"""``riverbed tail TOPIC``: pretty-print a topic's records (no consumer group)."""

from __future__ import annotations

import difflib
import errno
import select
import sys
from typing import TextIO

import orjson

from riverbed.config import Settings
from riverbed.exceptions import RiverbedError
from riverbed.kafka import clients
from riverbed.kafka.security import preflight

__all__ = ["MissingTopic", "format_record", "tail"]

METADATA_TIMEOUT_S = 30.0


class MissingTopic(RiverbedError):
    """The topic to tail does not exist (and tailing it must not create it)."""


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


async def _check_exists(settings: Settings, topic: str) -> None:
    """Raise :class:`MissingTopic` unless the cluster has ``topic``. Asked of the admin
    client, whose metadata request names no topic: a consumer subscribing to a missing
    topic would have a broker with ``auto.create.topics.enable`` create it."""
    async with clients.admin_client(settings, METADATA_TIMEOUT_S) as admin:
        topics = await admin.list_topics()
    if topic not in topics:
        near = difflib.get_close_matches(topic, topics, n=1)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        msg = f"topic {topic!r} does not exist at RIVERBED_BROKER={settings.bootstrap}{hint}"
        raise MissingTopic(msg)


def _reader_gone(out: TextIO) -> bool:
    """Whether ``out`` is a pipe whose reader has exited (``riverbed tail ... | head``),
    so an idle tail ends then instead of at the next record it fails to write."""
    try:
        fd = out.fileno()
    except (AttributeError, OSError, ValueError):  # not a file (a StringIO, say)
        return False
    if not hasattr(select, "poll"):
        return False
    poller = select.poll()
    poller.register(fd, 0)  # POLLERR and POLLHUP are reported unasked
    return any(ev & (select.POLLERR | select.POLLHUP) for _, ev in poller.poll(0))


async def tail(
    settings: Settings,
    topic: str,
    *,
    from_beginning: bool = True,
    limit: int | None = None,
    idle_timeout: float | None = None,
    out: TextIO = sys.stdout,
) -> int:
    """Print records of ``topic``; stop after ``limit`` records or ``idle_timeout`` idle s.

    Raises
    ------
    MissingTopic
        When ``topic`` does not exist; nothing creates it.
    BrokenPipeError
        When ``out`` is a pipe whose reader has gone.

    """
    await preflight(settings)  # a refused password or certificate: one clear error
    await _check_exists(settings, topic)
    consumer = clients.consumer(
        settings,
        enable_auto_commit=False,
        auto_offset_reset="earliest" if from_beginning else "latest",
    )
    await consumer.start()
    seen = 0
    try:
        # No group: subscribing without a group_id assigns every partition to us.
        consumer.subscribe([topic])
        while limit is None or seen < limit:
            timeout_ms = int((idle_timeout or 1.0) * 1000)
            batch = await consumer.getmany(timeout_ms=timeout_ms, max_records=500)
            if not batch and idle_timeout is not None:
                break
            if not batch and _reader_gone(out):
                raise BrokenPipeError(errno.EPIPE, "the reader of the output has exited")
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
