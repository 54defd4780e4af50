"""The runtime and the profiles must work on a base station without torch."""

import subprocess
import sys

BLOCK_TORCH = (
    "import sys, importlib.abc\n"
    "class Block(importlib.abc.MetaPathFinder):\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name == 'torch' or name.startswith('torch.'):\n"
    "            raise ImportError('torch is blocked in this test')\n"
    "sys.meta_path.insert(0, Block())\n"
)


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK_TORCH + code], capture_output=True, text=True, timeout=120)


def test_runtime_imports_without_torch():
    r = _run(
        "import pkgutil, importlib, aolo.runtime, aolo.hw_profiles\n"
        "for m in pkgutil.walk_packages(aolo.runtime.__path__, 'aolo.runtime.'):\n"
        "    importlib.import_module(m.name)\n"
        "assert 'torch' not in sys.modules\n"
        "print('ok')\n"
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("ok")


def test_plain_import_of_runtime_does_not_load_torch():
    r = _run("import aolo.runtime\nprint('torch' in sys.modules)\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"


def test_cli_starts_without_torch():
    """`aolo serve` runs at the base station: building the CLI must not need torch."""
    r = _run("import aolo.cli\nprint('torch' in sys.modules)\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"
