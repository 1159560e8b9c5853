"""The shape of the code, checked: small modules, no SQL in the faces, layers that only point down.

`make lint` runs the import contracts (pyproject.toml, [tool.importlinter]); these tests prove
they hold on the repository as it is and that they catch an upward import when one is added,
so the contracts cannot silently stop checking anything.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "reconcile"
MAX_LINES = 700
FACES = ("cli", "server")  # the command line and the HTTP server: parse, call, render

# Calls that run or read a query: a face calls the library instead.
QUERY_CALLS = frozenset(
    {"execute", "executemany", "sql", "query", "fetchone", "fetchall", "fetchmany", "fetchdf"}
)
QUERY_HELPERS = frozenset({"fetch_dicts"})  # library helpers that take a SQL string
# A statement (parsed by DuckDB to be sure) must start with one of these...
STATEMENT_START = re.compile(
    r"^\s*\(?\s*(select|insert|update|delete|create|drop|alter|with|merge|copy|attach|detach|"
    r"pragma|begin|commit|rollback|set|reset|install|load|export|import|vacuum|checkpoint|"
    r"truncate|describe|summarize|pivot|unpivot|from|values|call|use|upsert)\b",
    re.IGNORECASE,
)
# ... and look like code, not a sentence ("select a category from the list" parses too).
SQL_MARKS = re.compile(
    r"\b(SELECT|INSERT|UPDATE|DELETE|CREATE|DROP|ALTER|WITH|FROM|WHERE|VALUES|SET|INTO)\b"
    r"|[?$=*(),;']"
)
# A piece of a statement, built up elsewhere: uppercase clause keywords at the start.
SQL_FRAGMENT = re.compile(
    r"^\s*(WHERE|AND|OR|ORDER BY|GROUP BY|FROM|(LEFT |INNER |CROSS )?JOIN|LIMIT|HAVING|"
    r"VALUES|SET|RETURNING|UNION( ALL)?|ON CONFLICT|QUALIFY|WINDOW)\s"
)


def modules(folder: Path = PACKAGE) -> list[Path]:
    return sorted(path for path in folder.rglob("*.py") if "__pycache__" not in path.parts)


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the docstring nodes (text for people, not code)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def _texts(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """Every string the code builds, with its line: constants (adjacent literals are one
    already), f-strings with each placeholder as an identifier, and `+` chains of them."""
    skip = _docstrings(tree)
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            parts = _added(node)
            if parts is not None:
                yield node.lineno, "".join(parts)
        if isinstance(node, ast.JoinedStr):
            inside.update(id(value) for value in node.values)
            yield (
                node.lineno,
                "".join(
                    value.value if isinstance(value, ast.Constant) else "x" for value in node.values
                ),
            )
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in skip
            and id(node) not in inside
        ):
            yield node.lineno, node.value


def _added(node: ast.expr) -> list[str] | None:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _added(node.left), _added(node.right)
        return None if left is None or right is None else left + right
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        return ["".join(v.value if isinstance(v, ast.Constant) else "x" for v in node.values)]
    if isinstance(node, ast.Name | ast.Attribute | ast.Call | ast.Subscript):
        return ["x"]  # a name in the middle of a statement being built
    return None


def is_sql(text: str) -> bool:
    """Whether `text` is a SQL statement (DuckDB parses it) or an uppercase clause of one."""
    if SQL_FRAGMENT.match(text):
        return True
    if not STATEMENT_START.match(text) or not SQL_MARKS.search(text) or " " not in text.strip():
        return False
    try:
        return bool(duckdb.extract_statements(text))
    except duckdb.Error:
        return False


def sql_in(source: str) -> list[str]:
    """What in `source` runs SQL or holds it: query calls, query helpers, SQL strings."""
    tree = ast.parse(source)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if isinstance(func, ast.Attribute) and name in QUERY_CALLS:
                found.append(f"line {node.lineno}: .{name}(...)")
            elif name in QUERY_HELPERS:
                found.append(f"line {node.lineno}: {name}(...)")
    for line, text in _texts(tree):
        if is_sql(text):
            found.append(f"line {line}: SQL {' '.join(text.split())[:60]!r}")
    return sorted(set(found), key=lambda item: int(item.split()[1].rstrip(":")))


def test_no_module_is_longer_than_700_lines() -> None:
    too_long = {
        str(path.relative_to(ROOT)): count
        for path in modules()
        if (count := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert not too_long, f"modules over {MAX_LINES} lines (split them by concept): {too_long}"


def test_the_command_line_and_the_http_server_hold_no_sql() -> None:
    """The faces parse, call one library function, render and map errors: every query lives in
    the library."""
    found = {
        str(path.relative_to(ROOT)): hits
        for face in FACES
        for path in modules(PACKAGE / face)
        if (hits := sql_in(path.read_text()))
    }
    assert not found, "SQL in the faces (move it into the library):\n" + "\n".join(
        f"{name}: {'; '.join(hits)}" for name, hits in found.items()
    )


@pytest.mark.parametrize(
    "code",
    [
        'conn.execute("SELECT 1")',
        "session.conn.sql('select name from monitors')",
        "rows = db.fetch_dicts(conn, QUERY, [1])",
        "conn.execute(query).fetchall()",
        'QUERY = "select * from transactions where source = ?"',
        'QUERY = ("SELECT name " "FROM monitors " "WHERE source = ?")',
        'QUERY = f"SELECT {COLUMNS} FROM audit_events WHERE seq = ?"',
        'QUERY = "UPDATE api_tokens SET revoked_at = " + when',
        'QUERY = "insert into run_completions values (?, ?, ?, ?)"',
        "WHERE = 'WHERE source = ? AND run_id = ?'",
        'QUERY = """\n    WITH latest AS (SELECT 1 AS x)\n    SELECT x FROM latest\n"""',
    ],
)
def test_the_sql_check_finds_queries_however_they_are_written(code: str) -> None:
    assert sql_in(code), code


@pytest.mark.parametrize(
    "code",
    [
        'help = "Set RECON_BASE_URL so `recon monitor show` prints each monitor\'s URL."',
        'info("select a category from the list")',
        '@group.command("show")\ndef show() -> None:\n    """SELECT * FROM x (an example)."""',
        'click.echo(f"{seq}:{digest}")',
        'message = "update the token, then try again"',
        'hint = "delete the file and run recon init"',
        'raise click.UsageError("give either --date or --since/--until, not both")',
    ],
)
def test_the_sql_check_leaves_messages_and_docstrings_alone(code: str) -> None:
    assert not sql_in(code), code


def _lint_imports(cwd: Path, pythonpath: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` as `make lint` runs it: the contracts in `cwd`'s pyproject.toml, on the
    package importable from `pythonpath`."""
    found = Path(sys.executable).with_name("lint-imports")
    command = str(found) if found.exists() else shutil.which("lint-imports")
    assert command, "lint-imports is not installed (pip install -e '.[dev]')"
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    return subprocess.run(
        [command, "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_the_import_contracts_hold_on_the_repository() -> None:
    result = _lint_imports(ROOT, ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert " BROKEN" not in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contracts"),
    [
        # The store reaching up to the command line: two contracts say no.
        (
            "store/db.py",
            "from reconcile.cli import cli",
            ["Layers only point down", "Nothing imports the command line"],
        ),
        # click below the command line.
        ("reconciliation/compare.py", "import click", ["Only the command line imports click"]),
        # The library reaching up to the HTTP face.
        (
            "ingest/runs.py",
            "from reconcile.server import api",
            ["Layers only point down", "Only recon serve imports the HTTP face"],
        ),
        # duckdb outside the store.
        (
            "watch/schedule.py",
            "import duckdb",
            ["Only the store's low-level module imports duckdb"],
        ),
        # apprise outside the notification module.
        ("watch/tick.py", "import apprise", ["Only the notification module imports apprise"]),
    ],
)
def test_an_upward_import_breaks_the_contracts(
    tmp_path: Path, module: str, line: str, contracts: list[str]
) -> None:
    """A copy of the package with one wrong import added fails `lint-imports`, naming the
    contract it breaks."""
    shutil.copytree(PACKAGE, tmp_path / "reconcile", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / "reconcile" / module
    text = target.read_text()
    anchor = "from __future__ import annotations\n"
    assert anchor in text
    target.write_text(text.replace(anchor, f"{anchor}\n{line}  # noqa\n", 1))
    result = _lint_imports(tmp_path, tmp_path)
    assert result.returncode != 0, result.stdout
    for contract in contracts:
        assert re.search(rf"^{re.escape(contract)}.* BROKEN\b", result.stdout, re.MULTILINE), (
            f"{contract!r} not reported broken:\n{result.stdout}"
        )


def test_the_store_owns_db_and_migrations_without_a_cycle() -> None:
    """`store.connect` joins them; the low-level helpers know no schema."""
    import grimp

    graph = grimp.build_graph("reconcile", cache_dir=None)
    assert not graph.chain_exists("reconcile.store.db", "reconcile.store.migrations")
    assert graph.direct_import_exists(
        importer="reconcile.store.migrations", imported="reconcile.store.db"
    )
