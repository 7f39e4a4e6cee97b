"""The documentation's promises that a test can keep.

Every harness command the README and docs/ show must parse with today's parser, so a renamed or
mistyped flag fails here rather than in a reader's terminal. Parsing only: nothing is run. The
README must lead with its answer within 12 KB, keep the block `.ci/run` reads, and every relative
link in the README, docs/ and results/ must point at a file (and heading) that exists.
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from bench.commands.parser import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
COMMAND_DOCS = [README, *sorted((ROOT / "docs").glob("*.md"))]
LINKED_DOCS = [*COMMAND_DOCS, ROOT / "results" / "README.md", *sorted((ROOT / "results" / "published").glob("*.md"))]
README_MAX_BYTES = 12 * 1024  # issue 28: the README leads with the answer; reference lives in docs/

FENCE = re.compile(r"^```(\S*)\s*$")
SHELL_FENCES = {"", "sh", "bash", "shell", "console"}  # ```toml and ```python blocks hold no commands
SHELL_OPERATORS = {"&&", "||", ";", "|"}


def _blocks_and_prose(text: str) -> tuple[list[str], str]:
    """The lines of shell code blocks, and the prose outside every code block."""
    code: list[str] = []
    prose: list[str] = []
    fence: str | None = None
    for line in text.splitlines():
        m = FENCE.match(line)
        if m and fence is None:
            fence = m.group(1)
        elif m:
            fence = None
        elif fence is None:
            prose.append(line)
        elif fence in SHELL_FENCES:
            code.append(line)
    return code, "\n".join(prose)


MENTIONS_HARNESS = re.compile(r"(^|[\s;&|])(\S*/)?(lstm-bench|python3?\s+-m\s+bench)(\s|$)")


def _harness_args(command: str) -> list[list[str]]:
    """The argument lists of every harness call in one shell line (`a && b` gives each)."""
    if not MENTIONS_HARNESS.search(command):  # sample output, other tools' commands
        return []
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)  # '#' starts a comment
    lexer.whitespace_split = True
    calls: list[list[str]] = []
    segment: list[str] = []
    for token in [*lexer, ";"]:
        if token not in SHELL_OPERATORS:
            segment.append(token)
            continue
        if segment and Path(segment[0]).name == "lstm-bench":
            calls.append(segment[1:])
        elif len(segment) >= 3 and Path(segment[0]).name.startswith("python") and segment[1:3] == ["-m", "bench"]:
            calls.append(segment[3:])
        segment = []
    # A bare `lstm-bench` or `python -m bench` in prose names the program; it is no command.
    return [args for args in calls if args]


def _documented_commands() -> list[tuple[str, str, list[str]]]:
    """(where, the line, its harness arguments) for every harness call in a code block or inline span."""
    found = []
    for path in COMMAND_DOCS:
        code, prose = _blocks_and_prose(path.read_text())
        spans = [s.replace("\n", " ") for s in re.findall(r"`([^`]+)`", prose)]
        for line in [*code, *spans]:
            try:
                calls = _harness_args(line)
            except ValueError as e:  # unbalanced quotes: a reader's shell would refuse it too
                calls = [[f"<not a shell line: {e}>"]]
            for args in calls:
                found.append((path.relative_to(ROOT).as_posix(), line.strip(), args))
    return found


def _parse_error(args: list[str]) -> str | None:
    """None when the parser takes `args`, else what it said."""
    try:
        build_parser().parse_args(args)
    except SystemExit as e:  # --help, or argparse's own exit
        return f"exit {e.code}"
    except Exception as e:  # the parser's one-line usage error
        return str(e) or type(e).__name__
    return None


COMMANDS = _documented_commands()


def test_commands_are_found():
    # A broken extractor would make the test below pass on nothing. The README's first command
    # (`.venv/bin/python -m bench run --all` after the set-up) and its recipes must be seen.
    readme = [args for where, _, args in COMMANDS if where == "README.md"]
    assert ["run", "--all"] in readme
    assert len(readme) >= 5
    assert {where for where, _, _ in COMMANDS} >= {"README.md", "docs/recipes.md", "docs/ci.md"}
    assert len(COMMANDS) >= 40


@pytest.mark.parametrize("where, line, args", COMMANDS, ids=[f"{w}:{' '.join(a)[:60]}" for w, _, a in COMMANDS])
def test_documented_command_parses(where, line, args):
    error = _parse_error(args)
    assert error is None, f"{where}: `{line}` does not parse: {error}"


@pytest.mark.parametrize("line", [
    "lstm-bench run --all --profiel quick",                     # a mistyped flag
    "lstm-bench show 20261202-023954-quick-63c3 --format xlsx",  # a value outside the choices
    "python -m bench rnu --all",                                # a mistyped subcommand
    ".venv/bin/python -m bench run --all --rounds three",       # a flag's value of the wrong type
])
def test_a_bad_command_is_caught(line):
    # The check above must be able to fail: the same extraction and parsing reject these.
    (args,) = _harness_args(line)
    assert _parse_error(args) is not None


def test_extraction_reads_shell_lines_as_a_shell_would():
    assert _harness_args("python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/python -m bench run --all") \
        == [["run", "--all"]]
    assert _harness_args("lstm-bench list   # frameworks, models") == [["list"]]
    assert _harness_args("pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu") == []
    assert _harness_args("ray start --address 10.0.0.1:6379") == []


def test_readme_leads_with_the_answer_within_its_budget():
    text = README.read_text()
    assert len(text.encode()) <= README_MAX_BYTES, f"README.md is {len(text.encode())} bytes (budget {README_MAX_BYTES})"
    assert text.startswith("# lstm-bench\n")
    assert "python -m bench run --all" in text or "lstm-bench run --all" in text


def test_readme_keeps_the_block_ci_runs():
    # .ci/run runs the code block after this marker, as an awk script reads it: the first fenced
    # block after the marker, one command.
    lines = README.read_text().splitlines()
    after = lines[lines.index("<!-- ci:test -->") + 1:]
    assert after[0] == "```"
    command = after[1:after.index("```", 1)]
    assert len(command) == 1 and command[0].endswith("-m pytest -q"), command


def _slug(heading: str) -> str:
    # GitHub's anchor for a heading: lower case, punctuation dropped (hyphens and underscores
    # kept), spaces to hyphens.
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    _, prose = _blocks_and_prose(path.read_text())
    return {_slug(m) for m in re.findall(r"^#+ (.+)$", prose, flags=re.M)}


LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.mark.parametrize("doc", LINKED_DOCS, ids=[p.relative_to(ROOT).as_posix() for p in LINKED_DOCS])
def test_relative_links_resolve(doc):
    _, prose = _blocks_and_prose(doc.read_text())
    broken = []
    for target in LINK.findall(prose):
        if re.match(r"[a-z]+:", target):  # http(s), mailto: not ours to check
            continue
        file_part, _, anchor = target.partition("#")
        path = (doc.parent / file_part).resolve() if file_part else doc
        if not path.exists():
            broken.append(target)
        elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
            broken.append(target)
    assert not broken, f"{doc.relative_to(ROOT)}: links to nothing: {broken}"


def _runs_named(args: list[str]) -> tuple[list[str], list[str]]:
    """(runs a documented command reads or resumes, run ids it makes with --run-id)."""
    ns = build_parser().parse_args(args)
    reads = []
    for attr in ("run", "base", "head", "resume"):
        v = getattr(ns, attr, None)
        reads += v if isinstance(v, list) else [v] if isinstance(v, str) else []
    made = [ns.run_id] if getattr(ns, "run_id", None) else []
    return reads, made


def test_every_run_a_doc_names_exists_in_a_clone_or_is_made_by_a_documented_command():
    # A recipe that names a run nobody has (a git-ignored run id from someone's machine) fails in
    # every fresh clone: a run must be a committed directory or made by a documented `--run-id`.
    made = {run for _, _, args in COMMANDS for run in _runs_named(args)[1]}
    assert {"base", "head"} <= made  # the README's and recipes' own pair
    missing = []
    for where, line, args in COMMANDS:
        for run in _runs_named(args)[0]:
            if run.isupper() or run in made or (ROOT / run / "manifest.json").is_file():
                continue  # a placeholder (RUN, BASE), made above, or committed
            missing.append(f"{where}: `{line}` names run {run!r}")
    assert not missing, "\n".join(missing)
