"""A focused parser for the DDL statements that change captured table shapes.

MySQL/MariaDB write DDL into the binlog as statement text (a QueryEvent), even with
``binlog_format=ROW``. The source needs to know, at that point in the stream, how a table's
columns change, so events after it decode with the new shape and events before it (on a
replay) with the old one. This parser understands the statements that matter:

- ``ALTER TABLE t ADD [COLUMN] c type [FIRST|AFTER x]`` (also ``ADD (c1 t1, c2 t2)``),
  ``DROP [COLUMN] [IF EXISTS] c``, ``MODIFY [COLUMN] c type``, ``CHANGE [COLUMN] old new type``,
  ``RENAME COLUMN a TO b``, ``RENAME [TO|AS] t2``, ``ADD/DROP PRIMARY KEY``;
- ``CREATE TABLE``, ``DROP TABLE``, ``RENAME TABLE``, ``TRUNCATE [TABLE]``.

Anything else yields no change, or :class:`Unparsed` for a table statement it could not
follow; the caller then refreshes the table from ``information_schema`` instead. Clauses that
do not change columns (indexes, engine, comments, partitions) are skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+|--[^\n]*|\#[^\n]*|/\*.*?\*/)
  | (?P<qident>`(?:[^`]|``)*`)
  | (?P<str>'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.|"")*")
  | (?P<word>[A-Za-z0-9_$]+)
  | (?P<punct>.)
    """,
    re.VERBOSE | re.DOTALL,
)


@dataclass(frozen=True, slots=True)
class Tok:
    text: str
    kind: str  # "ident" (bare word or `quoted`), "str", "punct"
    quoted: bool = False

    def kw(self, *words: str) -> bool:
        return self.kind == "ident" and not self.quoted and self.text.upper() in words


def tokenize(sql: str) -> list[Tok]:
    out: list[Tok] = []
    for m in _TOKEN.finditer(sql):
        kind = m.lastgroup
        text = m.group()
        if kind == "ws":
            continue
        if kind == "qident":
            out.append(Tok(text[1:-1].replace("``", "`"), "ident", quoted=True))
        elif kind == "word":
            out.append(Tok(text, "ident"))
        elif kind == "str":
            out.append(Tok(text, "str"))
        else:
            out.append(Tok(text, "punct"))
    return out


@dataclass(frozen=True, slots=True)
class ColumnDef:
    name: str
    type: str  # the declared type, lower case, e.g. "decimal(12,2) unsigned"
    nullable: bool = True
    primary_key: bool = False


@dataclass(frozen=True, slots=True)
class AddColumn:
    column: ColumnDef
    first: bool = False
    after: str | None = None


@dataclass(frozen=True, slots=True)
class DropColumn:
    name: str


@dataclass(frozen=True, slots=True)
class ModifyColumn:
    """MODIFY (``old == column.name``), CHANGE or RENAME COLUMN (``column.type`` empty)."""

    old: str
    column: ColumnDef
    first: bool = False
    after: str | None = None


@dataclass(frozen=True, slots=True)
class PrimaryKey:
    columns: tuple[str, ...]  # empty: DROP PRIMARY KEY


ColumnOp = AddColumn | DropColumn | ModifyColumn | PrimaryKey


@dataclass(frozen=True, slots=True)
class AlterTable:
    db: str
    table: str
    ops: tuple[ColumnOp, ...]
    rename_to: tuple[str, str] | None = None


@dataclass(frozen=True, slots=True)
class CreateTable:
    db: str
    table: str
    columns: tuple[ColumnDef, ...]
    key: tuple[str, ...]
    like: tuple[str, str] | None = None


@dataclass(frozen=True, slots=True)
class DropTable:
    db: str
    table: str


@dataclass(frozen=True, slots=True)
class RenameTable:
    db: str
    table: str
    new_db: str
    new_table: str


@dataclass(frozen=True, slots=True)
class TruncateTable:
    db: str
    table: str


@dataclass(frozen=True, slots=True)
class Unparsed:
    """A statement on ``db.table`` that changes it in a way this parser does not follow."""

    db: str
    table: str


Change = AlterTable | CreateTable | DropTable | RenameTable | TruncateTable | Unparsed


@dataclass
class _Parser:
    toks: list[Tok]
    default_db: str
    i: int = 0

    def peek(self, k: int = 0) -> Tok | None:
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else None

    def next(self) -> Tok:
        tok = self.peek()
        if tok is None:
            raise ValueError("unexpected end of statement")
        self.i += 1
        return tok

    def accept(self, *words: str) -> bool:
        tok = self.peek()
        if tok is not None and tok.kw(*words):
            self.i += 1
            return True
        return False

    def at(self, *words: str) -> bool:
        tok = self.peek()
        return tok is not None and tok.kw(*words)

    def accept_punct(self, p: str) -> bool:
        tok = self.peek()
        if tok is not None and tok.kind == "punct" and tok.text == p:
            self.i += 1
            return True
        return False

    def ident(self) -> str:
        tok = self.next()
        if tok.kind != "ident":
            raise ValueError(f"expected a name, got {tok.text!r}")
        return tok.text

    def table_name(self) -> tuple[str, str]:
        first = self.ident()
        if self.accept_punct("."):
            return first, self.ident()
        return self.default_db, first

    def skip_group(self) -> None:
        """Skip a parenthesised group starting at the current '('."""
        depth = 0
        while (tok := self.peek()) is not None:
            self.i += 1
            if tok.kind == "punct" and tok.text == "(":
                depth += 1
            elif tok.kind == "punct" and tok.text == ")":
                depth -= 1
                if depth == 0:
                    return

    def at_clause_end(self) -> bool:
        tok = self.peek()
        return tok is None or (tok.kind == "punct" and tok.text in (",", ")", ";"))

    def skip_clause(self) -> None:
        """Skip to the next top-level ',' (or the end), leaving it unconsumed."""
        while not self.at_clause_end():
            tok = self.peek()
            if tok is not None and tok.kind == "punct" and tok.text == "(":
                self.skip_group()
            else:
                self.i += 1

    def column_def(self, name: str) -> ColumnDef:
        type_parts: list[str] = [self.ident().lower()]
        if self.accept("PRECISION", "VARYING"):  # DOUBLE PRECISION, CHARACTER VARYING
            type_parts[0] += " " + self.toks[self.i - 1].text.lower()
        if self.accept_punct("("):
            args: list[str] = []
            while not self.accept_punct(")"):
                args.append(self.next().text)
            # Enum/set labels keep their case; only the type name is normalised.
            type_parts[0] += "(" + ",".join(a for a in args if a != ",") + ")"
        while self.accept("UNSIGNED", "SIGNED", "ZEROFILL"):
            word = self.toks[self.i - 1].text.lower()
            if word != "signed":
                type_parts.append(word)
        nullable, primary = True, False
        while not self.at_clause_end():
            tok = self.peek()
            if tok is not None and tok.kw("FIRST", "AFTER"):
                break
            if self.accept("NOT"):
                if self.accept("NULL"):
                    nullable = False
                continue
            if self.accept("PRIMARY"):
                self.accept("KEY")
                primary, nullable = True, False
                continue
            if tok is not None and tok.kind == "punct" and tok.text == "(":
                self.skip_group()
            else:
                self.i += 1
        return ColumnDef(name, " ".join(type_parts), nullable, primary)

    def placement(self) -> tuple[bool, str | None]:
        if self.accept("FIRST"):
            return True, None
        if self.accept("AFTER"):
            return False, self.ident()
        return False, None


def _key_columns(p: _Parser) -> tuple[str, ...]:
    cols: list[str] = []
    if not p.accept_punct("("):
        return ()
    while True:
        cols.append(p.ident())
        if p.peek() is not None and p.accept_punct("("):  # prefix length: KEY (c(10))
            while not p.accept_punct(")"):
                p.next()
        p.accept("ASC", "DESC")
        if p.accept_punct(")"):
            return tuple(cols)
        if not p.accept_punct(","):
            raise ValueError("bad key column list")


def _alter_op(p: _Parser, ops: list[ColumnOp]) -> tuple[str, str] | None:
    """Parse one ALTER TABLE clause; return a rename target when the clause renames."""
    if p.accept("ADD"):
        if p.accept("PRIMARY"):
            p.accept("KEY")
            ops.append(PrimaryKey(_key_columns(p)))
            return None
        if p.accept("CONSTRAINT"):
            if not p.at("PRIMARY"):
                p.ident()
            if p.accept("PRIMARY"):
                p.accept("KEY")
                ops.append(PrimaryKey(_key_columns(p)))
            return None
        if p.at(
            "INDEX",
            "KEY",
            "UNIQUE",
            "FULLTEXT",
            "SPATIAL",
            "FOREIGN",
            "CHECK",
            "PARTITION",
            "PERIOD",
            "SYSTEM",
        ):
            return None
        p.accept("COLUMN")
        if p.accept("IF"):
            p.accept("NOT")
            p.accept("EXISTS")
        if p.accept_punct("("):
            while True:
                ops.append(AddColumn(p.column_def(p.ident())))
                if p.accept_punct(")"):
                    return None
                if not p.accept_punct(","):
                    raise ValueError("bad ADD column list")
        col = p.column_def(p.ident())
        first, after = p.placement()
        ops.append(AddColumn(col, first, after))
        return None
    if p.accept("DROP"):
        if p.accept("PRIMARY"):
            p.accept("KEY")
            ops.append(PrimaryKey(()))
            return None
        if p.at("INDEX", "KEY", "FOREIGN", "CHECK", "CONSTRAINT", "PARTITION", "PERIOD", "SYSTEM"):
            return None
        p.accept("COLUMN")
        if p.accept("IF"):
            p.accept("EXISTS")
        ops.append(DropColumn(p.ident()))
        return None
    if p.accept("MODIFY"):
        p.accept("COLUMN")
        if p.accept("IF"):
            p.accept("EXISTS")
        name = p.ident()
        col = p.column_def(name)
        first, after = p.placement()
        ops.append(ModifyColumn(name, col, first, after))
        return None
    if p.accept("CHANGE"):
        p.accept("COLUMN")
        if p.accept("IF"):
            p.accept("EXISTS")
        old = p.ident()
        col = p.column_def(p.ident())
        first, after = p.placement()
        ops.append(ModifyColumn(old, col, first, after))
        return None
    if p.accept("RENAME"):
        if p.accept("COLUMN"):
            old = p.ident()
            if not p.accept("TO"):
                raise ValueError("expected TO")
            ops.append(ModifyColumn(old, ColumnDef(p.ident(), "")))
            return None
        if p.at("INDEX", "KEY"):
            return None
        p.accept("TO", "AS")
        return p.table_name()
    return None


def _alter(p: _Parser) -> Change:
    p.accept("ONLINE", "IGNORE")
    if not p.accept("TABLE"):
        raise _NotTable
    if p.accept("IF"):
        p.accept("EXISTS")
    db, table = p.table_name()
    ops: list[ColumnOp] = []
    rename: tuple[str, str] | None = None
    try:
        while p.peek() is not None:
            target = _alter_op(p, ops)
            rename = target or rename
            p.skip_clause()
            if not p.accept_punct(","):
                break
    except ValueError:
        return Unparsed(db, table)
    return AlterTable(db, table, tuple(ops), rename)


def _create(p: _Parser) -> Change:
    if p.accept("OR"):
        p.accept("REPLACE")
    p.accept("TEMPORARY")
    if not p.accept("TABLE"):
        raise _NotTable
    if p.accept("IF"):
        p.accept("NOT")
        p.accept("EXISTS")
    db, table = p.table_name()
    if p.accept("LIKE"):
        return CreateTable(db, table, (), (), like=p.table_name())
    if not p.accept_punct("("):
        return Unparsed(db, table)  # CREATE TABLE ... SELECT
    cols: list[ColumnDef] = []
    key: tuple[str, ...] = ()
    try:
        while True:
            tok = p.peek()
            if tok is None:
                raise ValueError("unterminated")
            if tok.kw("PRIMARY") or (tok.kw("CONSTRAINT") and _primary_ahead(p)):
                while not p.accept("PRIMARY"):
                    p.next()
                p.accept("KEY")
                key = _key_columns(p)
            elif tok.kw(
                "INDEX",
                "KEY",
                "UNIQUE",
                "FULLTEXT",
                "SPATIAL",
                "FOREIGN",
                "CHECK",
                "CONSTRAINT",
                "PERIOD",
            ):
                pass
            else:
                cols.append(p.column_def(p.ident()))
            p.skip_clause()
            if p.accept_punct(")"):
                break
            if not p.accept_punct(","):
                raise ValueError("bad column list")
    except ValueError:
        return Unparsed(db, table)
    if not key:
        key = tuple(c.name for c in cols if c.primary_key)
    key_set = set(key)
    cols = [ColumnDef(c.name, c.type, c.nullable and c.name not in key_set, False) for c in cols]
    return CreateTable(db, table, tuple(cols), key)


def _primary_ahead(p: _Parser) -> bool:
    for k in (1, 2):
        tok = p.peek(k)
        if tok is not None and tok.kw("PRIMARY"):
            return True
    return False


class _NotTable(Exception):
    """The statement is not about a table (e.g. ALTER USER)."""


def parse(sql: str, default_db: str) -> list[Change]:
    """The table changes made by one statement; ``[]`` for statements that change none."""
    p = _Parser(tokenize(sql), default_db)
    try:
        if p.accept("ALTER"):
            return [_alter(p)]
        if p.accept("CREATE"):
            return [_create(p)]
        if p.accept("DROP"):
            p.accept("TEMPORARY")
            if not p.accept("TABLE", "TABLES"):
                return []
            if p.accept("IF"):
                p.accept("EXISTS")
            drops: list[Change] = []
            while True:
                drops.append(DropTable(*p.table_name()))
                if not p.accept_punct(","):
                    return drops
        if p.accept("RENAME"):
            if not p.accept("TABLE", "TABLES"):
                return []
            renames: list[Change] = []
            while True:
                old = p.table_name()
                p.accept("WAIT", "NOWAIT")
                if not p.accept("TO"):
                    return renames
                renames.append(RenameTable(*old, *p.table_name()))
                if not p.accept_punct(","):
                    return renames
        if p.accept("TRUNCATE"):
            p.accept("TABLE")
            return [TruncateTable(*p.table_name())]
    except (_NotTable, ValueError):
        return []
    return []
