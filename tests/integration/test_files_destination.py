"""FilesDestination: Parquet/JSONL files whose folded content equals the source table."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

import fsspec
import pyarrow.parquet as pq
import pytest

from tideflow.connectors.destinations.files.config import FilesDestinationConfig
from tideflow.connectors.destinations.files.destination import FilesDestination
from tideflow.engine.errors import DeadLetter
from tideflow.envelope import SourceInfo
from tideflow.events import UNCHANGED, Batch, ChangeEvent, Column, Op, TableSchema

pytestmark = pytest.mark.integration

T = TableSchema(
    "shop",
    "orders",
    (
        Column("id", "int8", "int", False, True),
        Column("amount", "numeric(10,2)", "decimal"),
        Column("at", "timestamptz", "timestamptz"),
        Column("tags", "text[]", "array"),
        Column("doc", "jsonb", "json"),
        Column("blob", "bytea", "bytes"),
        Column("day", "date", "date"),
        Column("note", "text", "text"),
    ),
    ("id",),
)
AT = dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.UTC)


def order(i: int, amount: str = "1.00", note: Any = "n") -> dict[str, Any]:
    return {
        "id": i,
        "amount": Decimal(amount),
        "at": AT,
        "tags": ["a", str(i)],
        "doc": '{"k": 1}',
        "blob": bytes([i % 256]),
        "day": dt.date(2024, 1, 1 + i % 28),
        "note": note,
    }


class Events:
    def __init__(self) -> None:
        self.lsn = 0

    def __call__(
        self,
        op: Op,
        after: dict[str, Any] | None = None,
        before: dict[str, Any] | None = None,
        table: TableSchema = T,
    ) -> ChangeEvent:
        self.lsn += 1
        return ChangeEvent(op, table, before, after, {"lsn": self.lsn}, 1_000 + self.lsn, 77)

    def batch(self, *events: ChangeEvent) -> Batch:
        return Batch(list(events), {"lsn": self.lsn})


def destination(path: str, **extra: Any) -> FilesDestination:
    cfg = FilesDestinationConfig.model_validate({"path.user.defined": path, **extra})
    d = FilesDestination(cfg, name="files")
    d.bind_source(SourceInfo("postgresql", "src", "shop"))
    d.open()
    return d


def read_rows(root: Path, folder: str = "shop.orders") -> list[dict[str, Any]]:
    """Every envelope row in file-name order, then row order (how a reader folds them)."""
    out: list[dict[str, Any]] = []
    for name in sorted(os.listdir(root / folder)):
        path = root / folder / name
        if name.endswith(".parquet"):
            out.extend(pq.read_table(path).to_pylist())
        elif name.endswith(".jsonl.gz"):
            out.extend(json.loads(line) for line in gzip.decompress(path.read_bytes()).splitlines())
        else:
            out.extend(json.loads(line) for line in path.read_text().splitlines())
    return out


def fold(rows: list[dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    """Apply envelope rows in order: the table they describe, keyed by id."""
    table: dict[Any, dict[str, Any]] = {}
    for r in rows:
        if r["op"] == "t":
            table.clear()
        elif r["op"] == "d":
            table.pop(r["before"]["id"], None)
        else:
            after = dict(r["after"])
            previous = table.get(after["id"], {})
            for name in r.get("__unchanged") or []:
                after[name] = previous.get(name)  # "not sent": keep what we had
            table[after["id"]] = after
    return table


def scenario(ev: Events) -> list[Batch]:
    return [
        ev.batch(*(ev(Op.READ, order(i)) for i in range(1, 6))),
        ev.batch(
            ev(Op.UPDATE, order(1, "9.99")),
            ev(Op.DELETE, before={"id": 2}),
            ev(Op.UPDATE, {**order(3, "3.00"), "note": UNCHANGED}, before={"id": 3}),
            ev(Op.CREATE, order(6, note=None)),
        ),
        ev.batch(ev(Op.UPDATE, order(6, "6.00", note="late"))),
    ]


EXPECTED_IDS = {1: "9.99", 3: "3.00", 4: "1.00", 5: "1.00", 6: "6.00"}


def test_parquet_files_fold_to_the_table(tmp_path: Path) -> None:
    dest = destination(str(tmp_path))
    for b in scenario(Events()):
        dest.write(b)
    rows = read_rows(tmp_path)
    table = fold(rows)
    assert {k: str(v["amount"]) for k, v in table.items()} == EXPECTED_IDS
    assert table[3]["note"] == "n" and table[6]["note"] == "late"
    assert table[1] == {
        "id": 1,
        "amount": Decimal("9.99"),
        "at": AT,
        "tags": ["a", "1"],
        "doc": '{"k": 1}',
        "blob": b"\x01",
        "day": dt.date(2024, 1, 2),
        "note": "n",
    }
    first = rows[0]
    assert first["op"] == "r" and first["before"] is None
    assert first["source"] == {
        "version": "0.1.0",
        "connector": "postgresql",
        "name": "src",
        "ts_ms": 1001,
        "snapshot": "false",
        "db": "shop",
        "schema": "shop",
        "table": "orders",
        "txId": 77,
        "lsn": 1,
    }
    unchanged = [r for r in rows if r["__unchanged"]]
    assert [(r["after"]["id"], r["after"]["note"], r["__unchanged"]) for r in unchanged] == [
        (3, None, ["note"])
    ]
    schema = pq.read_schema(next((tmp_path / "shop.orders").iterdir()))
    after = schema.field("after").type
    assert str(after.field("amount").type) == "decimal128(10, 2)"
    assert str(after.field("at").type) == "timestamp[us, tz=UTC]"
    assert str(after.field("tags").type) == "list<element: string>"
    assert (
        pq.read_metadata(next((tmp_path / "shop.orders").iterdir()))
        .row_group(0)
        .column(0)
        .compression
        == "ZSTD"
    )


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_jsonl_files_fold_to_the_table(tmp_path: Path, compression: str) -> None:
    dest = destination(
        str(tmp_path), **{"format.user.defined": "jsonl", "file.compression.type": compression}
    )
    for b in scenario(Events()):
        dest.write(b)
    rows = read_rows(tmp_path)
    assert {k: v["amount"] for k, v in fold(rows).items()} == EXPECTED_IDS
    assert rows[0]["after"]["at"] == "2024-05-06T07:08:09.123456+00:00"
    assert rows[0]["after"]["blob"] == "AQ=="
    assert "note" not in rows[7]["after"] and rows[7]["__unchanged"] == ["note"]


def test_names_sort_in_write_order_across_sessions_and_replays(tmp_path: Path) -> None:
    ev = Events()
    batches = scenario(ev)
    first = destination(str(tmp_path), **{"file.name.prefix": "orders-"})
    first.write(batches[0])
    first.write(batches[1])
    first.close()
    # A restart replays from an older checkpoint: the replay sorts after what it repeats.
    again = destination(str(tmp_path), **{"file.name.prefix": "orders-"})
    for b in batches[1:]:
        again.write(b)
    names = sorted(os.listdir(tmp_path / "shop.orders"))
    assert [n[:23] for n in names] == [f"orders-{i:016d}" for i in range(4)]
    assert all(n.startswith("orders-") and n.endswith(".parquet") for n in names)
    assert {k: str(v["amount"]) for k, v in fold(read_rows(tmp_path)).items()} == EXPECTED_IDS


def test_schema_changes_split_files_and_keep_columns(tmp_path: Path) -> None:
    v2 = TableSchema("shop", "orders", (*T.columns, Column("stock", "int4", "int")), ("id",), 2)
    ev = Events()
    dest = destination(str(tmp_path))
    dest.write(ev.batch(ev(Op.CREATE, order(1)), ev(Op.CREATE, {**order(2), "stock": 4}, table=v2)))
    files = sorted((tmp_path / "shop.orders").iterdir())
    assert len(files) == 2
    assert "stock" in pq.read_schema(files[1]).field("after").type.names
    assert fold(read_rows(tmp_path))[2]["stock"] == 4


def test_values_that_do_not_fit_the_type_become_strings_in_that_file(tmp_path: Path) -> None:
    ev = Events()
    dest = destination(str(tmp_path))
    dest.write(ev.batch(ev(Op.CREATE, {**order(1), "day": "infinity", "amount": Decimal("NaN")})))
    (row,) = read_rows(tmp_path)
    assert row["after"]["day"] == "infinity" and row["after"]["amount"] == "NaN"


def test_no_partial_file_is_ever_visible(tmp_path: Path) -> None:
    ev = Events()
    dest = destination(str(tmp_path))
    stop = threading.Event()
    seen: list[str] = []
    failures: list[str] = []

    def reader() -> None:
        folder = tmp_path / "shop.orders"
        while not stop.is_set():
            if not folder.exists():
                continue
            for name in os.listdir(folder):
                if name.startswith("."):
                    continue  # hidden temporary files are not part of the dataset
                try:
                    pq.read_table(folder / name)
                    seen.append(name)
                except Exception as exc:
                    failures.append(f"{name}: {exc}")

    t = threading.Thread(target=reader)
    t.start()
    try:
        for _ in range(20):
            dest.write(ev.batch(*(ev(Op.CREATE, order(i, note="x" * 200)) for i in range(2000))))
    finally:
        stop.set()
        t.join()
    assert failures == []
    assert seen
    assert not [n for n in os.listdir(tmp_path / "shop.orders") if n.startswith(".")]


def test_fsspec_target_uploads_complete_files(tmp_path: Path) -> None:
    url = "memory://tideflow-test/out"
    dest = destination(url)
    for b in scenario(Events()):
        dest.write(b)
    fs = fsspec.filesystem("memory")
    names = sorted(fs.ls("/tideflow-test/out/shop.orders", detail=False))
    assert len(names) == 3
    local = tmp_path / "copy" / "shop.orders"
    local.mkdir(parents=True)
    for n in names:
        fs.get_file(n, str(local / n.rsplit("/", 1)[-1]))
    assert {
        k: str(v["amount"]) for k, v in fold(read_rows(tmp_path / "copy")).items()
    } == EXPECTED_IDS
    fs.rm("/tideflow-test", recursive=True)


def test_dead_letters_are_idempotent_files(tmp_path: Path) -> None:
    ev = Events()
    dest = destination(str(tmp_path))
    letters = [DeadLetter(ev(Op.CREATE, order(13)), "refused")]
    dest.write_dead_letters(letters)
    dest.write_dead_letters(letters)
    (name,) = os.listdir(tmp_path / "_dead_letters")
    (line,) = (tmp_path / "_dead_letters" / name).read_text().splitlines()
    doc = json.loads(line)
    assert doc["error"] == "refused" and doc["event"]["after"]["id"] == 13
