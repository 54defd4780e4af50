"""`--help` text: every command's description flows paragraph by paragraph at any terminal width."""

import typer.main

from aolo.cli import app


def _commands(command, name="aolo"):
    yield name, command
    for sub_name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, f"{name} {sub_name}")


def test_every_command_help_has_no_line_breaks_inside_a_paragraph():
    names = set()
    for name, command in _commands(typer.main.get_command(app)):
        for paragraph in (command.help or "").split("\n\n"):
            assert "\n" not in paragraph.strip(), f"{name}: a wrapped line in its help: {paragraph[:60]!r}"
        names.add(name)
    assert {"aolo compare", "aolo serve", "aolo carbon estimate", "aolo profiles list"} <= names
