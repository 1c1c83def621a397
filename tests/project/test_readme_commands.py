"""The README's shell commands: every command, subcommand and option it names exists, and the literal ones run.

Scripts are written from the README, so a renamed option or a wrong CSV header there is a defect of the product.
"""

from __future__ import annotations

import argparse
import io
import re
import shlex
from pathlib import Path

import pytest
from django.core.management import call_command, get_commands, load_command_class

from imports.mappings.csvfile import CSV_COLUMNS
from imports.models import Datastore

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_commands() -> list[list[str]]:
    """Each `python manage.py …` line of the README's shell blocks, as arguments (continuations joined)."""
    text = README.read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"```(?:sh|bash)\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            for part in line.split("&&"):
                words = shlex.split(part, comments=True)
                if words[:2] == ["python", "manage.py"]:
                    commands.append(words[2:])
    return commands


def _parser(name: str) -> argparse.ArgumentParser:
    app = get_commands()[name]
    return load_command_class(app, name).create_parser("manage.py", name)


def _subparser(
    parser: argparse.ArgumentParser, words: list[str]
) -> tuple[argparse.ArgumentParser, list[str]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            assert words, "a subcommand is missing"
            assert words[0] in action.choices, (
                f"no subcommand {words[0]} (has {sorted(action.choices)})"
            )
            return action.choices[words[0]], words[1:]
    return parser, words


def _without_optional_parts(words: list[str]) -> list[str]:
    """The optional parts, in brackets, left out: the rest is what a newcomer types."""
    kept, depth = [], 0
    for word in words:
        depth += word.count("[")
        if not depth:
            kept.append(word)
        depth -= word.count("]")
    return kept


def test_the_readme_names_its_commands() -> None:
    names = {words[0] for words in readme_commands()}
    assert {"import_job", "datastore", "verify_audit"} <= names


@pytest.mark.parametrize(
    "words", readme_commands(), ids=lambda words: " ".join(words[:2])
)
def test_every_command_subcommand_and_option_in_the_readme_exists(
    words: list[str],
) -> None:
    assert words[0] in get_commands(), f"no command {words[0]}"
    parser, rest = _subparser(_parser(words[0]), words[1:])
    known = {option for action in parser._actions for option in action.option_strings}
    named = {word.strip("[]") for word in rest if word.strip("[]").startswith("--")}
    assert named - known == set(), f"{' '.join(words[:2])}: unknown options"


def test_an_unknown_option_would_be_caught() -> None:
    parser, _ = _subparser(_parser("import_job"), ["submit"])
    known = {option for action in parser._actions for option in action.option_strings}
    assert "--allow-duplicate" in known
    assert "--allow-duplicates" not in known


def test_the_readme_names_the_csv_header_the_cli_requires() -> None:
    text = README.read_text(encoding="utf-8")
    header = ",".join(CSV_COLUMNS)
    assert header in text
    assert "study_instance_uid,series_instance_uid" not in text
    assert "once that lands" not in text


def test_the_readme_datastore_and_audit_commands_run_as_written(db: None) -> None:
    literal: list[list[str]] = []
    for words in readme_commands():
        chosen = words[:2] in (
            ["datastore", "add"],
            ["datastore", "list"],
        ) or words == ["verify_audit"]
        if (
            chosen and words not in literal
        ):  # a command the README repeats (verify_audit) runs once
            literal.append(words)
    assert len(literal) == 3
    # As a newcomer would: the datastore first (audited), then the trail's check, which fails on an empty trail.
    literal.sort(key=lambda words: words == ["verify_audit"])
    out = io.StringIO()
    for words in literal:
        call_command(*_without_optional_parts(words), stdout=out)
    assert Datastore.objects.get().name == "Radiology"
    assert "Radiology" in out.getvalue()
