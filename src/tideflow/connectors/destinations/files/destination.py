"""The ``files`` destination: Parquet or JSONL files of Debezium envelopes, per source table.

Layout: ``<root>/<schema>.<table>/<prefix><seq>-<position>-<writer>.<ext>``. ``seq`` is a
16-digit write sequence per table folder, continued from the files already there when a
session starts, so file names sort in write order. Reading files in name order and rows in
file order, then keeping the last row per key, folds to the source table: a restart replays
from the last checkpoint (invariant 2), and replayed changes sort after what they repeat.
``position`` is the batch's checkpoint position (for people, not for ordering); ``writer`` is
random per session, so two sessions never write the same name.

A batch produces one file per table and schema version; every file is committed atomically
(:mod:`.storage`), so no reader ever sees a partial file. Files of one batch are committed one
after the other: a crash in between leaves some of them, and the replay writes them again.
"""

from __future__ import annotations

import gzip
import hashlib
import secrets
import time
from collections.abc import Sequence
from operator import attrgetter

import orjson
import pyarrow.parquet as pq

from tideflow.connectors.base import Destination
from tideflow.connectors.destinations.files import arrow
from tideflow.connectors.destinations.files.config import FilesDestinationConfig
from tideflow.connectors.destinations.files.storage import Storage, Writer, max_sequence
from tideflow.engine import positions
from tideflow.engine.errors import DeadLetter
from tideflow.envelope import Renderer, SourceInfo
from tideflow.errors import TerminalError, TransientError
from tideflow.events import Batch, ChangeEvent, TableSchema

DEAD_LETTERS = "_dead_letters"
_TABLE = attrgetter("table")


class FilesDestination(Destination[FilesDestinationConfig]):
    connector = "files"

    def __init__(self, config: FilesDestinationConfig, *, name: str) -> None:
        super().__init__(config, name=name)
        self.source_info = SourceInfo(connector="unknown", name=name)
        self._renderer = Renderer(self.source_info)
        self._storage: Storage | None = None
        self._next_seq: dict[str, int] = {}
        self._writer_id = ""

    def bind_source(self, info: SourceInfo) -> None:
        """Which source the events come from (the envelope's ``source`` block)."""
        self.source_info = info
        self._renderer = Renderer(info)

    def open(self) -> None:
        try:
            self._storage = Storage(self.config.path)
            self._storage.ensure_root()
        except (ValueError, ImportError) as exc:
            raise TerminalError(
                f"cannot use path {self.config.path!r}: {exc}", code="invalid_config"
            ) from exc
        except PermissionError as exc:
            raise TerminalError(
                f"cannot write under {self.config.path!r}: {exc}", code="destination_refused"
            ) from exc
        except OSError as exc:
            raise TransientError(f"cannot reach {self.config.path!r}: {exc}") from exc
        self._next_seq = {}
        self._writer_id = secrets.token_hex(3)

    def close(self) -> None:
        self._storage = None

    @property
    def extension(self) -> str:
        if self.config.format == "parquet":
            return "parquet"
        return "jsonl.gz" if self.config.compression == "gzip" else "jsonl"

    def write(self, batch: Batch) -> None:
        if not batch.events:
            return
        storage = self._storage
        if storage is None:
            raise TransientError("files destination is not open")
        ts_ms = int(time.time() * 1000)
        try:
            for table, events in _groups(batch.events):
                folder = f"{table.schema}.{table.table}"
                name = self._name(storage, folder, batch)
                storage.commit(folder, name, self._encoder(table, events, ts_ms))
        except PermissionError as exc:
            raise TerminalError(
                f"cannot write under {self.config.path!r}: {exc}", code="destination_refused"
            ) from exc
        except OSError as exc:
            raise TransientError(f"writing under {self.config.path!r} failed: {exc}") from exc

    def _name(self, storage: Storage, folder: str, batch: Batch) -> str:
        prefix = self.config.file_name_prefix
        seq = self._next_seq.get(folder)
        if seq is None:
            seq = max_sequence(storage.names(folder), prefix) + 1
        self._next_seq[folder] = seq + 1
        position = positions.format_key(batch.position)
        return f"{prefix}{seq:016d}-{position}-{self._writer_id}.{self.extension}"

    def _encoder(self, table: TableSchema, events: list[ChangeEvent], ts_ms: int) -> Writer:
        if self.config.format == "parquet":
            data = arrow.to_table(events, table, self._renderer, ts_ms)
            codec = self.config.compression

            def write_parquet(path: str) -> None:
                pq.write_table(data, path, compression=codec)

            return write_parquet
        body = b"".join(self._renderer.dumps(e, ts_ms=ts_ms) + b"\n" for e in events)
        if self.config.compression == "gzip":
            body = gzip.compress(body, compresslevel=5)

        def write_jsonl(path: str) -> None:
            with open(path, "wb") as f:
                f.write(body)

        return write_jsonl

    def write_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        """Store refused events as one JSONL file in ``_dead_letters`` (idempotent by name)."""
        storage = self._storage
        if storage is None:
            raise TransientError("files destination is not open")
        prints = [letter.fingerprint() for letter in letters]
        lines = [
            orjson.dumps(
                {
                    "fingerprint": p,
                    "error": letter.error,
                    "event": self._renderer.render(letter.event),
                }
            )
            for p, letter in zip(prints, letters, strict=True)
        ]
        name = f"{self.config.file_name_prefix}{_digest(prints)}.jsonl"
        body = b"\n".join(lines) + b"\n"

        def write(path: str) -> None:
            with open(path, "wb") as f:
                f.write(body)

        try:
            storage.commit(DEAD_LETTERS, name, write)
        except OSError as exc:
            raise TransientError(
                f"writing dead letters under {self.config.path!r} failed: {exc}"
            ) from exc


def _digest(prints: list[str]) -> str:
    return hashlib.sha256("".join(prints).encode()).hexdigest()[:24]


def _groups(events: Sequence[ChangeEvent]) -> list[tuple[TableSchema, list[ChangeEvent]]]:
    """Runs of events per table, split where the table's schema changes (one file each)."""
    tables = list(map(_TABLE, events))
    if tables.count(tables[0]) == len(tables):  # one table (count compares identities first)
        return [(tables[0], list(events))]
    runs: list[tuple[TableSchema, list[ChangeEvent]]] = []
    current: dict[str, tuple[TableSchema, list[ChangeEvent]]] = {}
    for e in events:
        run = current.get(e.table.name)
        if run is None or run[0] is not e.table:
            run = current[e.table.name] = (e.table, [])
            runs.append(run)
        run[1].append(e)
    return runs
