"""The package map of docs/design.md, enforced: imports flow one way and never in a circle.

Every ``import`` in ``qbhook/``, including the ones inside functions (a lazy import is still a
dependency), is read with ``ast``. A module may import its own stage and the stages below it:

    house (errors, files, paths, pathmap, units, progress, notify, config)
      < clients < catalog < decide < move < events < cli
    sandbox (the demo's real clients and pools) sits beside, on house and clients only.
"""

from __future__ import annotations

import ast
import pathlib

import qbhook

ROOT = pathlib.Path(qbhook.__file__).parent
ORDER = ["house", "clients", "catalog", "decide", "move", "events", "cli"]
ALLOWED = {stage: set(ORDER[: i + 1]) for i, stage in enumerate(ORDER)}
ALLOWED["sandbox"] = {"house", "clients", "sandbox"}
ALLOWED["cli"] |= {"sandbox"}
ALLOWED["entry"] = {"cli"}


def _modules(root: pathlib.Path = ROOT) -> dict[str, pathlib.Path]:
    out = {}
    for p in root.rglob("*.py"):
        parts = ("qbhook",) + p.relative_to(root).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = p
    return out


def _stage(module: str, root: pathlib.Path = ROOT) -> str:
    parts = module.split(".")
    if module == "qbhook.__main__":
        return "entry"
    if len(parts) > 1 and (root / parts[1]).is_dir():
        return parts[1]
    return "house"


def _imports(mods: dict[str, pathlib.Path]) -> dict[str, set[str]]:
    def resolve(target: str) -> str | None:
        while target and target not in mods:
            target = target.rpartition(".")[0]
        return target or None

    edges: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("qbhook"):
                targets = [
                    f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in mods else node.module for a in node.names
                ]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.startswith("qbhook")]
            for t in targets:
                r = resolve(t)
                if r and r != name and r != "qbhook":
                    edges[name].add(r)
    return edges


def _upward(root: pathlib.Path = ROOT) -> list[str]:
    mods = _modules(root)
    return sorted(
        f"{a} ({_stage(a, root)}) imports {b} ({_stage(b, root)})"
        for a, bs in _imports(mods).items()
        for b in bs
        if _stage(b, root) not in ALLOWED[_stage(a, root)]
    )


def test_imports_flow_one_way_between_stages():
    assert _upward() == []


def test_no_import_circle_between_modules():
    edges = _imports(_modules())
    seen: dict[str, int] = {}  # 1: on the current path, 2: done
    circles = []

    def visit(m: str, path: list[str]) -> None:
        seen[m] = 1
        for n in sorted(edges[m]):
            if seen.get(n) == 1:
                circles.append(" -> ".join(path[path.index(n) :] + [n]))
            elif n not in seen:
                visit(n, path + [n])
        seen[m] = 2

    for m in sorted(edges):
        if m not in seen:
            visit(m, [m])
    assert circles == []


def test_fact_gathering_does_not_call_the_decider():
    edges = _imports(_modules())
    assert "qbhook.decide.planner" not in edges["qbhook.decide.snapshot"]


def test_the_guard_sees_a_lazy_upward_import(tmp_path):
    """A catalog module importing the CLI inside a function is still reported."""
    (tmp_path / "catalog").mkdir()
    (tmp_path / "cli").mkdir()
    (tmp_path / "cli" / "app.py").write_text("main = None\n")
    (tmp_path / "catalog" / "scan.py").write_text("def f():\n    from qbhook.cli.app import main\n")
    assert _upward(tmp_path) == ["qbhook.catalog.scan (catalog) imports qbhook.cli.app (cli)"]


def _within(module: str, package: str) -> bool:
    """``module`` is ``package`` or inside it (``qbhook.clients`` is not inside ``qbhook.cli``)."""
    return module == package or module.startswith(package + ".")


# The one module outside the qBittorrent adapter that may import it: the registry constructs it.
ADAPTER_BUILDERS = {"qbhook.clients.registry"}


def _adapter_importers(root: pathlib.Path = ROOT) -> list[str]:
    """Modules outside ``clients/qbt`` that import ``qbhook.clients.qbt.*`` (besides the registry).

    The port's records and the shared hash and tag rules live in ``qbhook.clients.model``: a
    module that reaches into the adapter for them makes everything above depend on qBittorrent.
    """
    return sorted(
        f"{a} imports {b}"
        for a, bs in _imports(_modules(root)).items()
        for b in bs
        if _within(b, "qbhook.clients.qbt") and not _within(a, "qbhook.clients.qbt") and a not in ADAPTER_BUILDERS
    )


def test_only_the_registry_imports_the_qbittorrent_adapter():
    assert _adapter_importers() == []


def test_the_adapter_guard_sees_a_reach_into_qbt(tmp_path):
    """rtorrent.py taking the tag rule from qbt's client (what the guard is for) is reported."""
    (tmp_path / "clients" / "qbt").mkdir(parents=True)
    (tmp_path / "clients" / "qbt" / "client.py").write_text("def check_tags(t):\n    return t\n")
    (tmp_path / "clients" / "registry.py").write_text("from qbhook.clients.qbt.client import check_tags\n")
    (tmp_path / "clients" / "rtorrent.py").write_text("from qbhook.clients.qbt.client import check_tags\n")
    assert _adapter_importers(tmp_path) == ["qbhook.clients.rtorrent imports qbhook.clients.qbt.client"]


# What every command module may take from the CLI: the shared pieces (App, the parameter types,
# the printers both sides use). The package's __init__ re-exports them.
CLI_SHARED = {"qbhook.cli.app", "qbhook.cli"}


def _command_cross_imports(root: pathlib.Path = ROOT) -> list[str]:
    """Command modules importing another command module: the work one command shares with
    another is library work (decide.planning, decide.explain ...) or a piece of cli/app.py."""
    return sorted(
        f"{a} imports {b}"
        for a, bs in _imports(_modules(root)).items()
        for b in bs
        if _within(a, "qbhook.cli") and a not in CLI_SHARED and _within(b, "qbhook.cli") and b not in CLI_SHARED
    )


def test_command_modules_import_only_the_shared_cli_pieces():
    assert _command_cross_imports() == []


def test_the_command_guard_sees_one_command_borrowing_another(tmp_path):
    """apply taking compute_plan from plan (what the guard is for) is reported; app is allowed."""
    (tmp_path / "cli").mkdir()
    (tmp_path / "cli" / "app.py").write_text("main = None\n")
    (tmp_path / "cli" / "plan.py").write_text("from qbhook.cli.app import main\n\ndef compute_plan():\n    pass\n")
    (tmp_path / "cli" / "apply.py").write_text("def f():\n    from qbhook.cli.plan import compute_plan\n")
    assert _command_cross_imports(tmp_path) == ["qbhook.cli.apply imports qbhook.cli.plan"]
