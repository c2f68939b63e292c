"""Throughput probe of the mysql/mariadb source alone (no destination, no runtime).

Writes a workload of ``--rows`` rows (~150 bytes each, ``--txn`` rows per transaction) into a
fresh database on the MariaDB of `make services`, then reads it back through
:class:`MySQLSource` from the position before the workload and prints records/s. Every row
must arrive before a figure is printed.

    .venv/bin/python -m bench.mysql_probe --rows 200000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from tests.support import mysql

from tideflow.connectors.sources.mysql.config import MySQLSourceConfig
from tideflow.connectors.sources.mysql.source import MySQLSource
from tideflow.events import ChangeEvent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--txn", type=int, default=5_000, help="rows per transaction")
    parser.add_argument("--max-records", type=int, default=2_000)
    args = parser.parse_args()
    with mysql.temp_database("tfbench") as db, tempfile.TemporaryDirectory() as state:
        mysql.execute(
            f"CREATE TABLE `{db}`.bench (id BIGINT PRIMARY KEY, account INT NOT NULL, "
            "amount DECIMAL(12,2), status VARCHAR(16), note VARCHAR(64), "
            "created DATETIME(6), updated TIMESTAMP(6) NULL)"
        )
        config = MySQLSourceConfig.model_validate(
            mysql.source_config(**{"database.include.list.user.defined": db})
        )
        src = MySQLSource(config, name="bench", state_dir=Path(state))
        src.open(None)
        start = time.perf_counter()
        for lo in range(0, args.rows, args.txn):
            hi = min(lo + args.txn, args.rows)
            mysql.execute(
                f"INSERT INTO `{db}`.bench SELECT seq, seq % 1000, seq / 100, 'active', "
                "REPEAT('x', 48), NOW(6), NOW(6) "
                f"FROM `{db}`.seq_{lo + 1}_to_{hi}"
            )
        written = time.perf_counter() - start
        got = 0
        start = time.perf_counter()
        deadline = start + 600
        while got < args.rows:
            assert time.perf_counter() < deadline, f"only {got} of {args.rows} rows arrived"
            for record in src.poll(0.5, args.max_records):
                if isinstance(record, ChangeEvent):
                    got += 1
        elapsed = time.perf_counter() - start
        src.close()
    print(f"workload: {args.rows} rows written in {written:.1f}s ({args.txn} rows/txn)")
    print(f"mysql source: {got} rows in {elapsed:.2f}s = {got / elapsed:,.0f} rows/s")


if __name__ == "__main__":
    main()
