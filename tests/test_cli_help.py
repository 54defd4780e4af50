"""`--help` text: every command's description flows paragraph by paragraph at any terminal width."""

import re

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


def test_no_option_help_holds_square_brackets_that_rich_would_swallow_as_markup():
    for name, command in _commands(typer.main.get_command(app)):
        for param in getattr(command, "params", []):
            text = getattr(param, "help", None) or ""
            # rich reads an unescaped "[" followed by a letter, #, / or @ as the start of a style tag
            assert not re.search(r"(?<!\\)\[[a-z#/@][^\]]*\]", text), \
                f"{name} {param.opts}: {text!r} (say defaults with show_default=, or escape the bracket)"
