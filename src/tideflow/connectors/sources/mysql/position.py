"""The source position of the ``mysql``/``mariadb`` connector.

Serialised as ``{"binlog_file": "mariadb-bin.000003", "binlog_pos": 1234, "gtid": "0-1-57"}``:

- ``binlog_file``/``binlog_pos`` is the end of the last event of a committed transaction (the
  start of the next one), so resuming there skips that transaction and re-delivers everything
  after it (invariant 2). It is always present.
- ``gtid`` is the GTID state after that transaction, when the server has GTIDs: MariaDB's
  comma-separated ``domain-server-seq`` list (one entry per domain), or MySQL's executed GTID
  set (``uuid:1-57,...``). Resuming by GTID survives binlog renumbering and is preferred when
  ``snapshot.gtid`` is ``Yes``.

The keys are chosen so the runtime's generic ordering (values in sorted key order, see
:mod:`tideflow.engine.positions`) compares ``(binlog_file, binlog_pos)`` first: a GTID string
does not sort numerically (``0-1-9`` > ``0-1-10``), so it only breaks ties.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from tideflow.errors import TerminalError

_FILE_SEQ = re.compile(r"\.(\d+)$")


@dataclass(frozen=True, slots=True)
class BinlogPosition:
    file: str
    pos: int
    gtid: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"binlog_file": self.file, "binlog_pos": self.pos}
        if self.gtid:
            out["gtid"] = self.gtid
        return out

    def with_gtid(self, gtid: str | None) -> BinlogPosition:
        return replace(self, gtid=gtid)

    def sort_key(self) -> tuple[int, str, int]:
        """Order within one server: binlog file sequence number, then offset."""
        return (file_seq(self.file), self.file, self.pos)


def file_seq(name: str) -> int:
    """The numeric suffix of a binlog file name (``mariadb-bin.000012`` → 12)."""
    m = _FILE_SEQ.search(name)
    return int(m.group(1)) if m else 0


def from_dict(position: dict[str, Any]) -> BinlogPosition:
    """Parse a stored position; a malformed one is a terminal error (never guess).

    Also accepts the short form ``{"file": ..., "pos": ...}`` a person may type.
    """
    if not isinstance(position, dict):
        raise _invalid(position)
    file = position.get("binlog_file", position.get("file"))
    pos = position.get("binlog_pos", position.get("pos"))
    gtid = position.get("gtid")
    if isinstance(pos, str) and pos.isdigit():
        pos = int(pos)
    if (
        not isinstance(file, str)
        or not file
        or not isinstance(pos, int)
        or isinstance(pos, bool)
        or pos < 4
        or (gtid is not None and not isinstance(gtid, str))
    ):
        raise _invalid(position)
    return BinlogPosition(file, pos, gtid or None)


def _invalid(position: object) -> TerminalError:
    return TerminalError(
        f"invalid mysql source position {position!r}: expected "
        "{'binlog_file': <name>, 'binlog_pos': <int >= 4>, 'gtid': <optional str>}",
        code="invalid_position",
    )


def parse_mariadb_gtids(state: str) -> dict[int, tuple[int, int]]:
    """``"0-1-57,1-2-9"`` → ``{domain: (server_id, seq)}``; blanks are ignored."""
    out: dict[int, tuple[int, int]] = {}
    for part in state.split(","):
        part = part.strip()
        if not part:
            continue
        pieces = part.split("-")
        if len(pieces) != 3 or not all(p.isdigit() for p in pieces):
            raise ValueError(f"not a MariaDB GTID: {part!r}")
        domain, server, seq = (int(p) for p in pieces)
        out[domain] = (server, seq)
    return out


def format_mariadb_gtids(state: dict[int, tuple[int, int]]) -> str:
    return ",".join(f"{d}-{s}-{n}" for d, (s, n) in sorted(state.items()))
