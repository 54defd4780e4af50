"""Every module of aolo imports on its own, the modules' imports form no circle, and no package
reaches into another package's command-line module or private names."""

from __future__ import annotations

import ast
import importlib.util
import pkgutil
import subprocess
import sys
from pathlib import Path


PACKAGES = ("aolo", "aolo.hw_profiles", "aolo.runtime", "aolo.runtime.backends", "aolo.train", "aolo.export")
"""aolo's packages (setuptools maps each to its own folder, so they are listed, not walked)."""


def _modules() -> dict[str, Path]:
    """Module name -> source file, for every module of every package (``aolo.__main__`` runs the
    CLI on import and is left out)."""
    found = {}
    for package in PACKAGES:
        spec = importlib.util.find_spec(package)
        assert spec is not None and spec.origin is not None, package
        found[package] = Path(spec.origin)
        for info in pkgutil.iter_modules(spec.submodule_search_locations):
            name = f"{package}.{info.name}"
            if not info.ispkg and name != "aolo.__main__":
                found[name] = Path(spec.submodule_search_locations[0]) / f"{info.name}.py"
    return found


def _imports(name: str, path: Path) -> list[tuple[str, list[str]]]:
    """(module, imported names) of every import statement in the module, at any depth (imports
    inside functions count: they form circles as well, just later), relative ones made absolute."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            out.append((base, [a.name for a in node.names]))
    return out


def _graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the aolo modules it imports (``from pkg import mod`` counts as importing ``pkg.mod``)."""
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for module, names in _imports(name, path):
            targets |= {t for t in [module, *(f"{module}.{n}" for n in names)] if t in modules and t != name}
        graph[name] = targets
    return graph


def test_every_module_imports_on_its_own():
    # One interpreter for all modules, but before each import every aolo module is dropped from
    # sys.modules, so each one imports as if alone: what a circle or a hidden dependence on import
    # order needs to show. Third-party libraries stay loaded, which keeps this to seconds.
    code = (
        "import importlib, sys, traceback\n"
        "failed = []\n"
        f"for name in {sorted(_modules())!r}:\n"
        "    for m in [m for m in sys.modules if m == 'aolo' or m.startswith('aolo.')]:\n"
        "        del sys.modules[m]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception:\n"
        "        failed.append(name + ': ' + traceback.format_exc(limit=3))\n"
        "print('\\n'.join(failed) or 'ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok"), result.stdout[-3000:]


def _circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of the graph as [a, b, ..., a], or None (depth-first search)."""
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> list[str] | None:
        if name in path:
            return path[path.index(name):] + [name]
        if name in done:
            return None
        for target in sorted(graph.get(name, ())):
            found = visit(target, path + [name])
            if found:
                return found
        done.add(name)
        return None

    for name in sorted(graph):
        found = visit(name, [])
        if found:
            return found
    return None


def _reaches_in(modules: dict[str, Path]) -> list[str]:
    """Imports of a command-line module (outside ``aolo.cli``) or of another package's private names."""
    problems = []
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for module, names in _imports(name, path):
            if not module.startswith("aolo"):
                continue
            if module.endswith(".cli") and name != "aolo.cli":
                problems.append(f"{name} imports the command-line module {module}")
            target_package = module if module in PACKAGES else module.rpartition(".")[0]
            private = [n for n in names if n.startswith("_") and not n.endswith("__")]
            if private and target_package != package:
                problems.append(f"{name} imports {', '.join(private)} from {module}")
    return problems


def test_the_module_import_graph_has_no_circle():
    graph = _graph(_modules())
    assert len(graph) > 40
    circle = _circle(graph)
    assert circle is None, "import circle: " + " -> ".join(circle)


def test_no_module_reaches_into_a_command_line_module_or_another_packages_private_names():
    problems = _reaches_in(_modules())
    assert not problems, "\n".join(problems)


def test_the_checks_see_a_circle_and_a_private_import_where_there_is_one(tmp_path):
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("from aolo.y.cli import _table\n")
    b.write_text("def g():\n    from .a import h\n")
    modules = {"aolo.x.a": a, "aolo.x.b": b, "aolo.y.cli": b}
    graph = _graph({"aolo.x.a": a, "aolo.x.b": b})
    assert graph == {"aolo.x.a": set(), "aolo.x.b": {"aolo.x.a"}}
    assert _circle({"aolo.x.a": {"aolo.x.b"}, "aolo.x.b": {"aolo.x.a"}}) == ["aolo.x.a", "aolo.x.b", "aolo.x.a"]
    assert _reaches_in(modules) == ["aolo.x.a imports the command-line module aolo.y.cli",
                                    "aolo.x.a imports _table from aolo.y.cli"]
