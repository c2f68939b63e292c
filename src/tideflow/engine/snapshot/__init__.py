"""Snapshots that run while streaming continues (DBLog watermarks), source-agnostic.

Data flow: :mod:`.coordinator` (one per running source; planner thread + chunk readers) asks a
connector's :class:`~.reader.ChunkReader` for bounded chunks of rows between a low and a high
watermark written into the change stream; the source runner hands every polled record to the
coordinator, which notes keys changed inside a chunk's window (:mod:`.window`) and, at the
high watermark, emits the chunk's remaining rows as ``op=r`` events in stream order.
:mod:`.progress` persists per-table progress once the rows it covers are durable.
See ``docs/snapshots.md``.
"""
