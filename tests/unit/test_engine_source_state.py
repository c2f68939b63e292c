"""``make_source`` gives connectors that keep private state a directory keyed by source id."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tideflow.connectors import registry
from tideflow.engine import source_runner
from tideflow.engine.plan import Connector
from tideflow.settings import get_settings


class _Stateful:
    def __init__(self, config: Any, *, name: str, state_dir: Path | None = None) -> None:
        self.name, self.state_dir = name, state_dir


class _Stateless:
    def __init__(self, config: Any, *, name: str) -> None:
        self.name = name


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("TIDEFLOW_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


@pytest.mark.parametrize("cls", [_Stateful, _Stateless], ids=["accepts-state_dir", "no-state_dir"])
def test_state_dir_passed_only_when_accepted(
    cls: type, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(registry, "get", lambda kind, code: object())
    monkeypatch.setattr(registry, "load_implementation", lambda spec: cls)
    conn = Connector("src-42", "orders db", "mysql", "Active", object(), None, "")  # type: ignore[arg-type]
    made: Any = source_runner.make_source(conn)
    assert made.name == "orders db"
    if cls is _Stateful:
        assert made.state_dir == data_dir / "sources" / "src-42"
    else:
        assert not hasattr(made, "state_dir")
