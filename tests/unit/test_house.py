"""House rules of the code itself (issue 10): short functions (docstrings not counted), or a stated reason."""

from __future__ import annotations

import ast
import pathlib

import qbhook

ROOT = pathlib.Path(qbhook.__file__).parent
MAX_LINES = 60
REASON = "# Long on purpose:"


def _long_functions_without_reason(root: pathlib.Path) -> list[str]:
    out = []
    for path in sorted(root.rglob("*.py")):
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines), str(path))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            length = node.end_lineno - node.lineno + 1
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(getattr(first.value, "value", None), str):
                # a docstring that states the rules is wanted, not counted
                length -= first.end_lineno - first.lineno + 1
            # the reason sits right after the signature (and docstring), in the first lines of the body
            head = lines[node.lineno - 1 : node.body[0].lineno + 12]
            if length > MAX_LINES and not any(REASON in ln for ln in head):
                out.append(f"{path.relative_to(root)}:{node.lineno} {node.name} ({length} lines)")
    return out


def test_no_function_over_60_lines_without_a_one_line_reason():
    assert _long_functions_without_reason(ROOT) == []


def test_the_check_sees_a_long_function(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))
    (tmp_path / "m.py").write_text(f"def long():\n{body}\n\n\ndef short():\n    return 1\n")
    assert _long_functions_without_reason(tmp_path) == [f"m.py:1 long ({MAX_LINES + 1} lines)"]
    (tmp_path / "m.py").write_text(f"def long():\n    {REASON} a test\n{body}\n")
    assert _long_functions_without_reason(tmp_path) == []


def _exit_numbers_outside_exitcode(root: pathlib.Path) -> list[str]:
    """Places that give an exit status as a bare number or by a second name: ``exit_code = 65``,
    ``SystemExit(1)``, ``sys.exit(5 if ...)``, ``return 0`` in an ``exit_code`` property, any
    ``EXIT_X = ...``. Every status is a member of ``qbhook.errors.ExitCode``, named there only."""
    out = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            numbers: list[ast.AST] = []
            if isinstance(node, ast.Assign) and any(getattr(t, "id", "").startswith("EXIT_") for t in node.targets):
                out.append(f"{path.relative_to(root)}:{node.lineno}")  # a second name, whatever its value
            elif isinstance(node, ast.Assign) and any(
                getattr(t, "id", getattr(t, "attr", "")) == "exit_code" for t in node.targets
            ):
                numbers = [node.value]
            elif isinstance(node, ast.Call) and (
                getattr(node.func, "id", "") == "SystemExit" or getattr(node.func, "attr", "") == "exit"
            ):
                numbers = list(node.args)
            elif isinstance(node, ast.FunctionDef) and node.name == "exit_code":
                numbers = [r.value for r in ast.walk(node) if isinstance(r, ast.Return) and r.value is not None]
            for n in numbers:
                for leaf in ast.walk(n):
                    if isinstance(leaf, ast.Constant) and type(leaf.value) is int:
                        out.append(f"{path.relative_to(root)}:{leaf.lineno}")
    return sorted(out)


def test_every_exit_status_is_named_in_exitcode():
    # borg's rule: all codes named in one place (qbhook/errors.py), so README's list and the code agree
    assert _exit_numbers_outside_exitcode(ROOT) == []


def test_the_exit_status_check_sees_a_bare_number(tmp_path):
    (tmp_path / "m.py").write_text(
        "import sys\nclass E:\n    exit_code = 65\nsys.exit(5 if x else 0)\nEXIT_X = 6\nEXIT_Y = E.BUSY\n"
        "class S:\n    def exit_code(self):\n        return E.BUSY if x else 0\n"
    )
    assert _exit_numbers_outside_exitcode(tmp_path) == ["m.py:3", "m.py:4", "m.py:4", "m.py:5", "m.py:6", "m.py:9"]


# The printers a qbhook.cli module may call directly, each in app.py: echo_shown (every human
# line, through paths.shown) and echo_json (--json output, escaped by json.dumps already).
PRINTERS = {"echo_shown", "echo_json"}


def _bare_printers(root: pathlib.Path) -> list[str]:
    """Calls that write to stdout/stderr without ``paths.shown`` in the CLI's modules: click.echo
    / click.secho / print / sys.stdout.write / sys.stderr.write outside the PRINTERS."""
    out = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        inside: dict[int, str] = {}  # line -> the innermost function holding it
        for fn in ast.walk(tree):  # outer functions first: an inner one overwrites their lines
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                inside.update(dict.fromkeys(range(fn.lineno, fn.end_lineno + 1), fn.name))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            f = node.func
            bare = (
                (isinstance(f, ast.Name) and f.id == "print")
                or (
                    isinstance(f, ast.Attribute)
                    and f.attr in ("echo", "secho")
                    and getattr(f.value, "id", "") == "click"
                )
                or (
                    isinstance(f, ast.Attribute)
                    and f.attr == "write"
                    and isinstance(f.value, ast.Attribute)
                    and f.value.attr in ("stdout", "stderr")
                )
            )
            if bare and inside.get(node.lineno) not in PRINTERS:
                out.append(f"{path.relative_to(root)}:{node.lineno}")
    return out


def test_every_human_line_of_the_cli_goes_through_echo_shown():
    """A name from the filesystem or a client reaches some line of some command: one printer for
    all of them (cli.app.echo_shown) instead of a shown() at each place a name might appear."""
    assert _bare_printers(ROOT / "cli") == []


def test_the_sandbox_prints_nothing_itself():
    """`qbhook demo`'s lines (pool, torrent and path names among them) go through the ``say`` the CLI
    hands the sandbox (echo_shown), never a print of its own (the sandbox cannot import the CLI)."""
    assert _bare_printers(ROOT / "sandbox") == []


def test_the_printer_check_sees_a_bare_echo(tmp_path):
    (tmp_path / "m.py").write_text(
        "import click, sys\n"
        "def echo_shown(line):\n    click.echo(line)\n"
        "def f(name):\n    click.echo(name)\n    print(name)\n    sys.stderr.write(name)\n    echo_shown(name)\n"
    )
    assert _bare_printers(tmp_path) == ["m.py:5", "m.py:6", "m.py:7"]


# The names a human line is printed by: the CLI's printer, and the sandbox's callback to it.
LINE_PRINTERS = {"echo_shown", "say"}


def _line_breaks_in_shown_lines(root: pathlib.Path) -> list[str]:
    """echo_shown (or say) calls whose own text (a literal, or an f-string's literal parts) holds a
    line break: shown escapes it, so the user saw "\\x0a4 to demote" where a blank line was meant."""
    out = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") in LINE_PRINTERS:
                for part in ast.walk(node):
                    if isinstance(part, ast.Constant) and isinstance(part.value, str) and "\n" in part.value:
                        out.append(f"{path.relative_to(root)}:{node.lineno}")
                        break
    return out


def test_no_human_line_carries_its_own_line_break():
    """A blank line or a second line is its own echo_shown call (the escaping cannot tell a
    format's line break from one in a name); the demo's ``say`` too."""
    assert _line_breaks_in_shown_lines(ROOT / "cli") == []
    assert _line_breaks_in_shown_lines(ROOT / "sandbox") == []


def test_the_line_break_check_sees_one(tmp_path):
    (tmp_path / "m.py").write_text(
        'def f(n):\n    echo_shown(f"\\n{n} to demote")\n    echo_shown()\n'
        '    echo_shown(f"{n} x" + ("\\nerr" if n else ""))\n'
        '    say(f"\\n== {n} ==")\n'
    )
    assert _line_breaks_in_shown_lines(tmp_path) == ["m.py:2", "m.py:4", "m.py:5"]


_SQL_WORDS = ("SELECT ", "INSERT ", "UPDATE ", "DELETE ", "REPLACE ", "CREATE ", "DROP ", "PRAGMA ")


def _raw_sql_in_cli(root: pathlib.Path) -> list[str]:
    """SQL the CLI runs itself: a call of ``execute``/``executemany``/``executescript``, or a
    string that starts like a statement. A command asks the catalog (``Catalog`` and the
    catalog modules' methods), which is where each query and its rule has its one home."""
    out = []
    for path in sorted((root / "cli").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") in (
                "execute",
                "executemany",
                "executescript",
            ):
                out.append(f"{path.relative_to(root)}:{node.lineno} {node.func.attr}()")
            elif (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and node.value.lstrip().upper().startswith(_SQL_WORDS)
            ):
                out.append(f"{path.relative_to(root)}:{node.lineno} {node.value.split()[0]}")
    return out


def test_no_raw_sql_in_the_cli():
    assert _raw_sql_in_cli(ROOT) == []


def test_the_sql_check_sees_a_query_in_a_command(tmp_path):
    (tmp_path / "cli").mkdir()
    (tmp_path / "cli" / "scan.py").write_text(
        'def f(conn):\n    q = "SELECT id FROM inodes"\n    return conn.execute(q)\n'
    )
    assert _raw_sql_in_cli(tmp_path) == ["cli/scan.py:2 SELECT", "cli/scan.py:3 execute()"]
