"""Checkpoint format, forward-only writes and fencing (engine/checkpoints.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tideflow.engine.checkpoints import Checkpoints, Saved, decode, encode
from tideflow.engine.errors import Fenced
from tideflow.engine.positions import before, format_key, oldest
from tideflow.errors import TerminalError
from tideflow.store.db import Store
from tideflow.store.models.runtime import Checkpoint


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(f"sqlite:///{tmp_path}/meta.db")
    s.migrate()
    return s


def test_format_version_1_golden() -> None:
    assert encode({"lsn": 42}) == {"version": 1, "position": {"lsn": 42}}
    assert decode({"version": 1, "position": {"lsn": 42}}) == {"lsn": 42}


@pytest.mark.parametrize(
    "doc",
    [{"version": 2, "position": {"lsn": 1}}, {"position": {}}, {"version": 1}],
    ids=["newer", "unversioned", "no-position"],
)
def test_unknown_or_broken_formats_are_refused(doc: dict[str, object]) -> None:
    with pytest.raises(TerminalError):
        decode(doc)


def test_positions_order() -> None:
    assert before({"lsn": 9}, {"lsn": 10})
    assert not before({"lsn": 10}, {"lsn": 10})
    assert before({"file": "bin.000002", "pos": 900}, {"file": "bin.000003", "pos": 4})
    assert oldest([{"lsn": 5}, {"lsn": 3}, {"lsn": 4}]) == {"lsn": 3}
    assert oldest([{"lsn": 5}, None]) is None
    assert format_key({"lsn": 42}) == "00000000000000000042"
    assert format_key({"lsn": 9}) < format_key({"lsn": 10})


def test_positions_only_move_forward(store: Store) -> None:
    cp = Checkpoints(store)
    assert cp.save("pipeline:a", {"lsn": 10}) == (Saved.WRITTEN, {"lsn": 10})
    assert cp.save("pipeline:a", {"lsn": 10}) == (Saved.UNCHANGED, {"lsn": 10})
    # invariant 2: an older position is refused and the stored one is reported
    assert cp.save("pipeline:a", {"lsn": 7}) == (Saved.REFUSED_OLDER, {"lsn": 10})
    assert cp.load("pipeline:a") == {"lsn": 10}
    assert cp.save("pipeline:a", {"lsn": 11}) == (Saved.WRITTEN, {"lsn": 11})
    assert cp.load_many(["pipeline:a", "pipeline:b"]) == {"pipeline:a": {"lsn": 11}}


def test_stored_row_is_versioned(store: Store) -> None:
    Checkpoints(store).save("pipeline:a", {"lsn": 3})
    with store.session() as s:
        row = s.get(Checkpoint, "pipeline:a")
        assert row is not None
        assert (row.version, row.position, row.generation) == (1, {"lsn": 3}, 0)


def test_a_newer_generation_fences_older_writers(store: Store) -> None:
    old, new = Checkpoints(store, generation=1), Checkpoints(store, generation=2)
    old.save("pipeline:a", {"lsn": 10})
    new.save("pipeline:a", {"lsn": 12})
    with pytest.raises(Fenced):
        old.save("pipeline:a", {"lsn": 20})
    assert new.load("pipeline:a") == {"lsn": 12}
    # the newer owner keeps writing; equal positions still record its generation
    assert new.save("pipeline:a", {"lsn": 13})[0] is Saved.WRITTEN
