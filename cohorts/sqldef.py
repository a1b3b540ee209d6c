"""SQL cohort definitions: one SELECT, schema placeholders, refused before it runs otherwise.

A steward's ``.sql`` file holds one ``SELECT`` (or ``WITH ... SELECT``) returning
``subject_id, cohort_start_date, cohort_end_date``, with the schemas written as ``@cdm_schema``,
``@vocab_schema`` and ``@results_schema``. :func:`prepare_sql` tokenizes it (comments, quoted
strings, quoted identifiers and PostgreSQL dollar quotes are understood, so a keyword or a
``;`` hidden in a string is not mistaken for code, and code hidden after a comment is seen),
refuses anything that is not exactly one read-only query, and substitutes the placeholders with
the quoted references from :meth:`cohorts.db.Database.placeholders`.

The scan is the first of three locks: the query then runs in a read-only transaction
(PostgreSQL) or on a read-only connection without file access (DuckDB).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cohorts.errors import UnsafeSqlError

PLACEHOLDERS = ("cdm_schema", "vocab_schema", "results_schema")
# Statements that write, change settings or reach outside the database. INTO catches
# PostgreSQL's SELECT ... INTO new_table.
FORBIDDEN_KEYWORDS = frozenset(
    [
        "insert",
        "update",
        "delete",
        "merge",
        "drop",
        "create",
        "alter",
        "truncate",
        "copy",
        "attach",
        "detach",
        "pragma",
        "set",
        "reset",
        "install",
        "load",
        "export",
        "import",
        "vacuum",
        "analyze",
        "checkpoint",
        "call",
        "execute",
        "do",
        "grant",
        "revoke",
        "lock",
        "use",
        "comment",
        "refresh",
        "begin",
        "commit",
        "rollback",
        "savepoint",
        "into",
        "prepare",
        "deallocate",
        "listen",
        "notify",
    ]
)
# Functions that read or write files or other databases: refused even inside a SELECT.
FORBIDDEN_FUNCTIONS = frozenset(
    [
        "read_csv",
        "read_csv_auto",
        "read_parquet",
        "parquet_scan",
        "read_json",
        "read_json_auto",
        "read_json_objects",
        "read_ndjson",
        "read_text",
        "read_blob",
        "glob",
        "sniff_csv",
        "sqlite_scan",
        "postgres_scan",
        "mysql_scan",
        "pg_read_file",
        "pg_read_binary_file",
        "pg_ls_dir",
        "pg_stat_file",
        "lo_import",
        "lo_export",
        "lo_get",
        "dblink",
        "dblink_exec",
        "pg_sleep",
        "query",
        "query_table",
    ]
)


@dataclass(frozen=True)
class Token:
    kind: str  # word | string | ident | placeholder | semicolon | other | space
    text: str


_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<line_comment>--[^\n]*)
  | (?P<block_comment>/\*)
  | (?P<dollar>\$(?P<tag>[A-Za-z_][A-Za-z0-9_]*)?\$)
  | (?P<string>[EeXxBbNn]?'(?:[^']|'')*')
  | (?P<ident>"(?:[^"]|"")*")
  | (?P<placeholder>@[A-Za-z_][A-Za-z0-9_]*)
  | (?P<word>[A-Za-z_][A-Za-z0-9_$]*)
  | (?P<semicolon>;)
  | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)


def tokenize(sql: str) -> list[Token]:
    """Split SQL into tokens; comments are dropped (replaced by a space)."""
    tokens: list[Token] = []
    pos = 0
    while pos < len(sql):
        match = _TOKEN.match(sql, pos)
        if match is None:  # pragma: no cover - the last alternative matches any character
            raise UnsafeSqlError(f"cannot read the SQL at character {pos}")
        kind = match.lastgroup or "other"
        if kind == "block_comment":
            pos = _skip_block_comment(sql, match.start())
            tokens.append(Token("space", " "))
            continue
        if kind in ("dollar", "tag"):
            pos = _skip_dollar_quote(sql, match)
            tokens.append(Token("string", sql[match.start() : pos]))
            continue
        if kind == "string" and match.group()[0] in "Ee":
            # Backslash escapes would make PostgreSQL end the string elsewhere than we do.
            raise UnsafeSqlError("escape strings (E'...') are not allowed; use '...'")
        if kind == "other" and match.group() in "'\"":
            raise UnsafeSqlError(f"unterminated quoted text starting at character {pos}")
        if kind == "line_comment":
            tokens.append(Token("space", "\n"))
        else:
            tokens.append(Token(kind, match.group()))
        pos = match.end()
    return tokens


def _skip_block_comment(sql: str, start: int) -> int:
    """End of a (nestable, as in PostgreSQL) block comment starting at ``start``."""
    depth, pos = 0, start
    while pos < len(sql):
        if sql.startswith("/*", pos):
            depth, pos = depth + 1, pos + 2
        elif sql.startswith("*/", pos):
            depth, pos = depth - 1, pos + 2
            if depth == 0:
                return pos
        else:
            pos += 1
    raise UnsafeSqlError("unterminated /* comment")


def _skip_dollar_quote(sql: str, match: re.Match[str]) -> int:
    end = sql.find(match.group(), match.end())
    if end < 0:
        raise UnsafeSqlError(f"unterminated dollar-quoted string {match.group()}")
    return end + len(match.group())


def prepare_sql(sql: str, placeholders: dict[str, str]) -> str:
    """The single SELECT of a definition, comments removed and placeholders substituted.

    Raises UnsafeSqlError (before anything runs) for an empty file, several statements,
    anything but SELECT/WITH, a forbidden keyword or function, or an unknown placeholder.
    """
    statements = _split(tokenize(sql))
    if not statements:
        raise UnsafeSqlError("the SQL definition holds no statement")
    if len(statements) > 1:
        raise UnsafeSqlError(
            f"the SQL definition holds {len(statements)} statements; write exactly one SELECT"
        )
    statement = statements[0]
    first = next(t for t in statement if t.kind != "space" and t.text != "(")
    if first.kind != "word" or first.text.lower() not in ("select", "with"):
        raise UnsafeSqlError(f"a SQL definition must start with SELECT or WITH, not {first.text!r}")
    return "".join(_checked(t, statement, i, placeholders) for i, t in enumerate(statement))


def _split(tokens: list[Token]) -> list[list[Token]]:
    statements: list[list[Token]] = [[]]
    for token in tokens:
        if token.kind == "semicolon":
            statements.append([])
        else:
            statements[-1].append(token)
    return [s for s in statements if any(t.kind != "space" for t in s)]


def _checked(token: Token, statement: list[Token], i: int, placeholders: dict[str, str]) -> str:
    if token.kind == "placeholder":
        name = token.text[1:].lower()
        if name not in PLACEHOLDERS or name not in placeholders:
            raise UnsafeSqlError(
                f"unknown placeholder {token.text!r}",
                hint="use @cdm_schema, @vocab_schema or @results_schema",
            )
        return placeholders[name]
    if token.kind != "word":
        return token.text
    word = token.text.lower()
    if word in FORBIDDEN_KEYWORDS:
        raise UnsafeSqlError(f"{token.text.upper()} is not allowed in a SQL cohort definition")
    if word in FORBIDDEN_FUNCTIONS and _next_code(statement, i) == "(":
        raise UnsafeSqlError(f"function {token.text}() is not allowed in a cohort definition")
    return token.text


def _next_code(statement: list[Token], i: int) -> str:
    for token in statement[i + 1 :]:
        if token.kind != "space":
            return token.text
    return ""
