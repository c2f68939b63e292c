"""Where a binlog reader starts, whether it still can, and the reader itself.

Starting points:

- MariaDB by GTID (``snapshot.gtid=Yes``, the default): the reader sends the GTID state as
  ``@slave_connect_state``. ``mysql-replication`` with ``is_mariadb=True`` *ignores*
  file/position and replays from the oldest binlog unless given a GTID, so file/position starts
  on MariaDB use the classic ``COM_BINLOG_DUMP`` path (``is_mariadb=False``), which MariaDB
  serves too; the GTID state at that point comes from ``BINLOG_GTID_POS()``.
- MySQL by GTID set when ``gtid_mode=ON``, else by file/position.

Before streaming, :func:`plan` checks that the resume point still exists (invariant 5): a
binlog file older than the oldest one left, a position past the end of its file, or a GTID
state older than what the oldest binlog starts from is a :class:`TerminalError` asking for a
re-snapshot — never a silent skip to what is left.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, TypeAlias

import pymysql
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.event import (
    FormatDescriptionEvent,
    GtidEvent,
    HeartbeatLogEvent,
    MariadbGtidEvent,
    QueryEvent,
    RotateEvent,
    XidEvent,
)
from pymysqlreplication.gtid import Gtid, GtidSet
from pymysqlreplication.row_event import (
    DeleteRowsEvent,
    TableMapEvent,
    UpdateRowsEvent,
    WriteRowsEvent,
)

from tideflow.connectors.sources.mysql import catalog
from tideflow.connectors.sources.mysql.config import MySQLSourceConfig
from tideflow.connectors.sources.mysql.position import (
    BinlogPosition,
    file_seq,
    format_mariadb_gtids,
    parse_mariadb_gtids,
)
from tideflow.errors import TerminalError, TransientError

Conn: TypeAlias = "pymysql.connections.Connection[Any]"

# The server sends a heartbeat after this long without events; it bounds how long a poll
# waits on an idle stream and tells the reader it is caught up.
HEARTBEAT_PERIOD_S = 0.2
# No byte (not even a heartbeat) for this long means the connection is dead.
READ_TIMEOUT_S = 30

EVENTS = [
    WriteRowsEvent,
    UpdateRowsEvent,
    DeleteRowsEvent,
    TableMapEvent,
    XidEvent,
    QueryEvent,
    MariadbGtidEvent,
    GtidEvent,
    RotateEvent,
    FormatDescriptionEvent,
    HeartbeatLogEvent,
]


class GtidState:
    """The GTID state after the last committed transaction, updated as the stream goes."""

    def __init__(self, mariadb: bool, text: str | None) -> None:
        self.mariadb = mariadb
        self._maria: dict[int, tuple[int, int]] = {}
        self._mysql: GtidSet | None = None
        self._txn: Any = None
        self.txid: int | None = None
        if text is None:
            return
        if mariadb:
            self._maria = parse_mariadb_gtids(text)
        else:
            self._mysql = GtidSet(text)

    def begin_mariadb(self, domain: int, server: int, seq: int) -> None:
        self._txn = (domain, server, seq)
        self.txid = seq

    def begin_mysql(self, gtid: str) -> None:
        self._txn = gtid
        self.txid = int(gtid.rsplit(":", 1)[1])

    def commit(self) -> None:
        txn, self._txn = self._txn, None
        if txn is None:
            return
        if isinstance(txn, tuple):
            domain, server, seq = txn
            self._maria[domain] = (server, seq)
        elif self._mysql is not None:
            self._mysql.merge_gtid(Gtid(txn))

    def text(self) -> str | None:
        if self.mariadb:
            return format_mariadb_gtids(self._maria) if self._maria else None
        return str(self._mysql) if self._mysql is not None and str(self._mysql) else None


@dataclass
class Plan:
    start: BinlogPosition
    mariadb: bool
    by_gtid: bool
    gtids: GtidState


def check_row_format(conn: Conn, config: MySQLSourceConfig) -> None:
    """Refuse to stream a binlog that would not carry row images: STATEMENT or MIXED events
    (or MINIMAL images) would silently lose changes (invariant 5)."""
    v = catalog.variables(conn, "binlog_format", "binlog_row_image")
    fmt, image = v.get("binlog_format", "").upper(), v.get("binlog_row_image", "FULL").upper()
    if fmt != "ROW":
        raise TerminalError(
            f"binlog_format is {fmt or 'unknown'} on {catalog.describe(config)}; change capture "
            "needs ROW: SET GLOBAL binlog_format=ROW (and binlog_format=ROW in my.cnf)",
            code="binlog_format",
        )
    if image != "FULL":
        raise TerminalError(
            f"binlog_row_image is {image} on {catalog.describe(config)}; updates and deletes "
            "need full row images: SET GLOBAL binlog_row_image=FULL (and in my.cnf)",
            code="binlog_format",
        )


def plan(conn: Conn, config: MySQLSourceConfig, start: BinlogPosition | None) -> Plan:
    mariadb = catalog.is_mariadb(conn)
    status = catalog.query(conn, "SHOW MASTER STATUS")
    if not status:
        raise TerminalError(
            f"the binary log is disabled on {catalog.describe(config)} (log_bin=OFF): enable "
            "log_bin with binlog_format=ROW and restart the server",
            code="binlog_disabled",
        )
    check_row_format(conn, config)
    mysql_gtid = False
    if not mariadb:
        mode = catalog.variables(conn, "gtid_mode").get("gtid_mode", "OFF").upper()
        mysql_gtid = mode == "ON"
    want_gtid = config.snapshot_gtid == "Yes" and (mariadb or mysql_gtid)
    if start is None:
        file, pos = str(status[0][0]), int(status[0][1])
        gtid = _current_gtids(conn, mariadb, status[0]) if (mariadb or mysql_gtid) else None
        start = BinlogPosition(file, pos, gtid)
    elif start.gtid is None and mariadb:
        start = start.with_gtid(_mariadb_gtid_at(conn, start) or None)
    by_gtid = want_gtid and start.gtid is not None
    check_available(conn, start, mariadb, by_gtid, config)
    return Plan(start, mariadb, by_gtid, GtidState(mariadb, start.gtid))


def _current_gtids(conn: Conn, mariadb: bool, status: Any) -> str | None:
    if mariadb:
        value = catalog.query(conn, "SELECT @@GLOBAL.gtid_binlog_pos")[0][0]
        return str(value) or None
    text = str(status[4]).replace("\n", "") if len(status) > 4 else ""
    return text or None


def _mariadb_gtid_at(conn: Conn, start: BinlogPosition) -> str | None:
    try:
        value = catalog.query(conn, "SELECT BINLOG_GTID_POS(%s, %s)", (start.file, start.pos))
    except pymysql.err.MySQLError:
        return None
    return str(value[0][0]) if value and value[0][0] else None


def check_available(
    conn: Conn, start: BinlogPosition, mariadb: bool, by_gtid: bool, config: MySQLSourceConfig
) -> None:
    """invariant 5: refuse a resume point the server no longer (or never) had."""
    logs = [(str(r[0]), int(r[1])) for r in catalog.query(conn, "SHOW BINARY LOGS")]
    where = catalog.describe(config)
    if not logs:
        raise TerminalError(f"no binary logs on {where}", code="binlog_disabled")
    oldest, newest = logs[0][0], logs[-1][0]
    if by_gtid and start.gtid:
        if mariadb:
            _check_mariadb_gtids(conn, start.gtid, oldest, where)
        else:
            purged = catalog.query(
                conn, "SELECT GTID_SUBSET(@@GLOBAL.gtid_purged, %s)", (start.gtid,)
            )
            if not purged[0][0]:
                raise _purged(where, f"GTIDs after {start.gtid} were purged")
        return
    sizes = dict(logs)
    if start.file not in sizes:
        if file_seq(start.file) < file_seq(oldest):
            raise _purged(where, f"binlog {start.file} was purged (oldest is {oldest})")
        raise TerminalError(
            f"binlog {start.file} does not exist on {where} (newest is {newest}): the server "
            f"was reset or this position belongs to another server. {catalog.RESNAPSHOT}",
            code="binlog_gap",
        )
    if start.pos > sizes[start.file]:
        raise TerminalError(
            f"position {start.pos} is past the end of {start.file} ({sizes[start.file]} bytes) "
            f"on {where}: the binlog was rewritten. {catalog.RESNAPSHOT}",
            code="binlog_gap",
        )


_GTID_LIST = re.compile(r"\[(.*)\]")


def _check_mariadb_gtids(conn: Conn, state: str, oldest: str, where: str) -> None:
    """The oldest binlog starts with a Gtid_list: the state every purged file reached."""
    rows = catalog.query(conn, "SHOW BINLOG EVENTS IN %s LIMIT 4", (oldest,))
    listed: dict[int, tuple[int, int]] = {}
    for row in rows:
        if str(row[2]) == "Gtid_list":
            m = _GTID_LIST.search(str(row[5]))
            listed = parse_mariadb_gtids(m.group(1)) if m else {}
            break
    ours = parse_mariadb_gtids(state)
    for domain, (_, seq) in listed.items():
        have = ours.get(domain)
        if have is None or have[1] < seq:
            raise _purged(
                where,
                f"the resume GTID state {state} is older than the oldest binlog {oldest} "
                f"(which starts after {domain}-{listed[domain][0]}-{seq})",
            )


def _purged(where: str, detail: str) -> TerminalError:
    return TerminalError(
        f"{detail} on {where}: changes since the last checkpoint are no longer in the binlog. "
        f"{catalog.RESNAPSHOT} {catalog.KEEP_BINLOGS}",
        code="binlog_purged",
    )


def open_reader(
    config: MySQLSourceConfig, plan: Plan, server_id: int, schemas: frozenset[str], *, name: str
) -> BinLogStreamReader:
    settings = catalog.settings(config)
    settings["read_timeout"] = READ_TIMEOUT_S
    kwargs: dict[str, Any] = {
        "connection_settings": settings,
        "server_id": server_id,
        "blocking": True,
        "resume_stream": True,
        "only_events": EVENTS,
        "only_schemas": sorted(schemas),
        "slave_heartbeat": HEARTBEAT_PERIOD_S,
        "report_slave": {
            "hostname": f"tideflow:{name}"[:60],
            "username": "",
            "password": "",
            "port": 0,
        },
        "enable_logging": False,
        "pymysql_wrapper": _no_silent_reconnect(),
    }
    if plan.by_gtid:
        kwargs.update(auto_position=plan.start.gtid, is_mariadb=plan.mariadb)
    else:
        kwargs.update(log_file=plan.start.file, log_pos=plan.start.pos, is_mariadb=False)
    return BinLogStreamReader(**kwargs)


def _no_silent_reconnect() -> Any:
    """A connection factory that refuses to reconnect the binlog stream.

    On a lost connection the library silently reconnects from *its* last event offset, which
    may be inside a transaction whose table maps it no longer has, so rows would be skipped.
    Failing instead lets the runtime reopen the source from the last checkpoint (invariant 2).
    """
    opened = {"stream": 0}

    def connect(**kwargs: Any) -> Conn:
        if kwargs.get("db") != "information_schema":
            opened["stream"] += 1
            if opened["stream"] > 1:
                raise TransientError("binlog connection lost", code="source_unavailable")
        return pymysql.connect(**kwargs)

    return connect


def create_heartbeat_table(conn: Conn, db: str, table: str) -> None:
    catalog.query(
        conn,
        f"CREATE TABLE IF NOT EXISTS `{_q(db)}`.`{_q(table)}` "
        "(id INT PRIMARY KEY, ts DATETIME(3) NOT NULL)",
    )


def write_heartbeat(conn: Conn, db: str, table: str) -> None:
    catalog.query(
        conn,
        f"INSERT INTO `{_q(db)}`.`{_q(table)}` (id, ts) VALUES (1, UTC_TIMESTAMP(3)) "
        "ON DUPLICATE KEY UPDATE ts = UTC_TIMESTAMP(3)",
    )


def _q(name: str) -> str:
    return name.replace("`", "``")
