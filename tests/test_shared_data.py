"""Where the shared Sprout data is looked for: the environment variable, else beside the checkout."""

from pathlib import Path

from aolo.shared_data import ENV_VAR, shared_data_dir

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_the_environment_variable_wins(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    assert shared_data_dir() == tmp_path


def test_without_it_the_data_is_looked_for_beside_the_checkout(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert shared_data_dir() == REPO_ROOT.parent / "shared" / "data"
