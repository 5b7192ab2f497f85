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
