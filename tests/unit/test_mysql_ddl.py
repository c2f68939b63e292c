"""The focused DDL parser and how its changes apply to a table shape."""

from __future__ import annotations

import pytest

from tideflow.connectors.sources.mysql import ddl
from tideflow.connectors.sources.mysql.tracker import apply_ops
from tideflow.events import Column, TableSchema

BASE = TableSchema(
    "db",
    "t",
    (
        Column("id", "int(11)", "int", False, True),
        Column("a", "varchar(10)", "text"),
        Column("b", "int(11)", "int"),
    ),
    ("id",),
)


def alter(sql: str) -> ddl.AlterTable:
    (change,) = ddl.parse(sql, "db")
    assert isinstance(change, ddl.AlterTable)
    return change


def shape(sql: str) -> list[tuple[str, str, bool]]:
    out = apply_ops(BASE, alter(sql).ops, "bytes")
    return [(c.name, c.type, c.nullable) for c in out.columns]


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        (
            "ALTER TABLE t ADD COLUMN c DECIMAL(8, 2) NOT NULL DEFAULT 1.5 AFTER a",
            [
                ("id", "int(11)", False),
                ("a", "varchar(10)", True),
                ("c", "decimal(8,2)", False),
                ("b", "int(11)", True),
            ],
        ),
        (
            "alter table `db`.`t` add c bigint unsigned first",
            [
                ("c", "bigint unsigned", True),
                ("id", "int(11)", False),
                ("a", "varchar(10)", True),
                ("b", "int(11)", True),
            ],
        ),
        (
            "ALTER TABLE t ADD (x INT, y ENUM('Yes','no') NOT NULL)",
            [
                ("id", "int(11)", False),
                ("a", "varchar(10)", True),
                ("b", "int(11)", True),
                ("x", "int", True),
                ("y", "enum('Yes','no')", False),
            ],
        ),
        ("ALTER TABLE t DROP COLUMN b", [("id", "int(11)", False), ("a", "varchar(10)", True)]),
        (
            "ALTER TABLE t DROP b, DROP INDEX idx_a",
            [("id", "int(11)", False), ("a", "varchar(10)", True)],
        ),
        (
            "ALTER TABLE t MODIFY COLUMN a TEXT CHARACTER SET utf8mb4 COMMENT 'x, y' NOT NULL",
            [("id", "int(11)", False), ("a", "text", False), ("b", "int(11)", True)],
        ),
        (
            "ALTER TABLE t CHANGE a renamed VARCHAR(20) AFTER b",
            [("id", "int(11)", False), ("b", "int(11)", True), ("renamed", "varchar(20)", True)],
        ),
        (
            "ALTER TABLE t RENAME COLUMN b TO c",
            [("id", "int(11)", False), ("a", "varchar(10)", True), ("c", "int(11)", True)],
        ),
        (
            "ALTER TABLE t ADD INDEX (a), ENGINE=InnoDB, ADD COLUMN IF NOT EXISTS d DATE",
            [
                ("id", "int(11)", False),
                ("a", "varchar(10)", True),
                ("b", "int(11)", True),
                ("d", "date", True),
            ],
        ),
        (
            "/* comment */ ALTER TABLE t ADD COLUMN `we``ird` DOUBLE PRECISION -- trailing",
            [
                ("id", "int(11)", False),
                ("a", "varchar(10)", True),
                ("b", "int(11)", True),
                ("we`ird", "double precision", True),
            ],
        ),
    ],
    ids=[
        "add-after",
        "add-first",
        "add-list",
        "drop",
        "drop-and-index",
        "modify",
        "change",
        "rename-column",
        "mixed-clauses",
        "quoted-and-comments",
    ],
)
def test_alter_table_column_changes(sql: str, expected: list[tuple[str, str, bool]]) -> None:
    assert shape(sql) == expected


def test_primary_key_changes() -> None:
    out = apply_ops(
        BASE, alter("ALTER TABLE t DROP PRIMARY KEY, ADD PRIMARY KEY (a, b)").ops, "bytes"
    )
    assert out.key == ("a", "b")
    assert [c.key for c in out.columns] == [False, True, True]


def test_rename_via_alter_and_rename_table() -> None:
    assert alter("ALTER TABLE t RENAME TO other.t2").rename_to == ("other", "t2")
    assert ddl.parse("RENAME TABLE t TO t_old, db2.x TO db2.y", "db") == [
        ddl.RenameTable("db", "t", "db", "t_old"),
        ddl.RenameTable("db2", "x", "db2", "y"),
    ]


def test_create_table() -> None:
    (create,) = ddl.parse(
        "CREATE TABLE IF NOT EXISTS `s`.`t` (id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT, "
        "name VARCHAR(20) DEFAULT 'a,b', price DECIMAL(10,2), "
        "PRIMARY KEY (id), KEY idx (name(5)), CONSTRAINT c CHECK (price > 0)) ENGINE=InnoDB",
        "db",
    )
    assert isinstance(create, ddl.CreateTable)
    assert (create.db, create.table, create.key) == ("s", "t", ("id",))
    assert [(c.name, c.type, c.nullable) for c in create.columns] == [
        ("id", "bigint unsigned", False),
        ("name", "varchar(20)", True),
        ("price", "decimal(10,2)", True),
    ]
    (like,) = ddl.parse("CREATE TABLE t2 LIKE t", "db")
    assert isinstance(like, ddl.CreateTable) and like.like == ("db", "t")


def test_drop_truncate_and_unrelated_statements() -> None:
    assert ddl.parse("DROP TABLE IF EXISTS a, `b`.c", "db") == [
        ddl.DropTable("db", "a"),
        ddl.DropTable("b", "c"),
    ]
    assert ddl.parse("TRUNCATE TABLE x", "db") == [ddl.TruncateTable("db", "x")]
    for sql in (
        "BEGIN",
        "ALTER USER root IDENTIFIED BY 'x'",
        "CREATE DATABASE d",
        "GRANT SELECT ON *.* TO u",
        "FLUSH PRIVILEGES",
        "DROP VIEW v",
    ):
        assert ddl.parse(sql, "db") == [], sql


def test_create_table_as_select_is_unparsed() -> None:
    assert ddl.parse("CREATE TABLE t AS SELECT 1", "db") == [ddl.Unparsed("db", "t")]
