"""Gaps in a partition the ``kafkadirect`` source reads (invariant 5: gaps are errors).

The source knows the next offset it must read of every partition it has a position for. When
the broker no longer holds that offset, because retention (or ``kafka-delete-records``) moved
the partition's log start past it or because the topic was deleted and recreated, the consumer
falls back to ``auto.offset.reset`` and the first message it returns is not the expected one.

Offsets are not always contiguous (transaction markers, compaction), so a jump alone proves
nothing: it is a gap only when the partition's log start is now past the expected offset (the
messages in between are gone), or when the offset went backwards (the partition was recreated).
"""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaException, TopicPartition

from tideflow.errors import TerminalError

WATERMARK_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Gap:
    topic: str
    partition: int
    expected: int  # the next offset the position says to read
    found: int  # the first offset the broker gave instead
    log_start: int  # the partition's earliest offset now (-1: unknown)

    @property
    def recreated(self) -> bool:
        return self.found < self.expected

    def message(self, consumer_name: str) -> str:
        where = f"topic {self.topic} partition {self.partition}"
        if self.recreated:
            what = (
                f"the next offset to read was {self.expected} but the partition now ends at "
                f"{self.found}: the topic was deleted and recreated, and the changes it held "
                "after that offset are lost to this reader"
            )
        else:
            what = (
                f"offsets {self.expected} to {self.log_start - 1} were deleted (retention.ms / "
                f"retention.bytes or delete-records) before {consumer_name} read them; the log "
                f"now starts at {self.log_start}"
            )
        return (
            f"gap in {where}: {what}. Nothing after the gap was written. To recover, rebuild "
            "the destination: re-snapshot the source's tables, or accept the loss and move the "
            "position to the start of what the log holds (log mode: python -m "
            "tideflow.engine.cluster.replay <pipeline id>), then resume; raise the topic's "
            "retention.ms above the longest pause to avoid this"
        )


def check(consumer: Consumer, topic: str, partition: int, expected: int, found: int) -> None:
    """Raise a terminal ``log_gap`` error when the jump from ``expected`` to ``found`` (the
    offset of the first message returned) skipped messages the broker no longer has.

    Costs one metadata request per forward jump, which only transaction markers and gaps
    cause (none in the log mode's topics, one per transaction in a transactional topic)."""
    if found == expected:
        return
    gap = Gap(topic, partition, expected, found, _log_start(consumer, topic, partition))
    if gap.recreated or gap.log_start > expected:
        raise TerminalError(gap.message("this reader"), code="log_gap")


def check_assigned(consumer: Consumer, assigned: list[TopicPartition]) -> None:
    """Raise ``log_gap`` for a partition assigned at an offset it no longer holds: before its
    log start (retention) or past its end (recreated). Checked when a position is first
    assigned, so a paused reader reports the gap at once, not when a next message arrives."""
    for tp in assigned:
        if tp.offset < 0:
            continue  # not from a position: the group's offset or auto.offset.reset
        try:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(tp.topic, tp.partition), timeout=WATERMARK_TIMEOUT_S
            )
        except KafkaException:
            continue  # unknown now: the first message after a jump is checked anyway
        if low is None or high is None:
            continue
        if tp.offset < low:
            gap = Gap(tp.topic, tp.partition, tp.offset, int(low), int(low))
        elif tp.offset > high:
            gap = Gap(tp.topic, tp.partition, tp.offset, int(high), int(low))
        else:
            continue
        raise TerminalError(gap.message("this reader"), code="log_gap")


def _log_start(consumer: Consumer, topic: str, partition: int) -> int:
    try:
        low, _ = consumer.get_watermark_offsets(
            TopicPartition(topic, partition), timeout=WATERMARK_TIMEOUT_S
        )
    except KafkaException:
        return -1
    return int(low) if low is not None else -1
