"""The parser of `lstm-bench` (and `python -m bench`): the global flags, then each subcommand's
own parser, in the order `-h` lists them."""
from __future__ import annotations

import argparse
import os
import sys
from importlib import metadata
from typing import Any

from .. import envinfo, registry
from . import check, envs_cmd, listing, overhead, run, show, trend
from .usage import Parser

# The documented command; `python -m bench` passes its own name, so usage lines and hints
# repeat what the user typed.
PROG = "lstm-bench"
RESULTS_VARIABLE = "LSTM_BENCH_RESULTS"
RESULTS_HELP = (f"where runs are stored; before or after the subcommand (default: ${RESULTS_VARIABLE} if set, "
                f"else ./results; the flag wins over the variable)")


def build_parser(prog: str = PROG) -> Parser:
    p = Parser(prog=prog, description="lstm-bench: LSTM vs CNN on MNIST in torch, TF/Keras and JAX, measured the "
                                      "same way")
    p.add_argument("--version", action=VersionAction, help="print the version of lstm-bench, its git commit and the "
                                                           "installed frameworks' versions, then exit")
    p.add_argument("--results-dir", metavar="DIR", default=os.environ.get(RESULTS_VARIABLE) or "results",
                   help=RESULTS_HELP)
    p.set_defaults(prog=prog)  # for hints that name a command (`list`'s "show RUN")
    sub = p.add_subparsers(dest="cmd", parser_class=Parser)
    run.add_parser(sub)
    listing.add_parser(sub)
    show.add_show_parser(sub)
    check.add_parsers(sub)
    show.add_plot_and_export_parsers(sub)
    overhead.add_parser(sub)
    envs_cmd.add_parser(sub)
    trend.add_parser(sub)
    for name, sp in sub.choices.items():
        # After the subcommand too (`lstm-bench show RUN --results-dir DIR`). SUPPRESS: a
        # subcommand that was not given the flag keeps the value parsed before it (or the default).
        sp.add_argument("--results-dir", metavar="DIR", default=argparse.SUPPRESS, help=RESULTS_HELP)
    return p


def version_text() -> str:
    """lstm-bench's version and commit, then each framework's packages as installed: read from
    the package metadata, so nothing is imported (a broken framework install still answers)."""
    try:
        own = metadata.version("lstm-bench")
    except metadata.PackageNotFoundError:
        own = "(not installed: run from a checkout)"
    git = envinfo.git_state()
    commit = "no git checkout" if not git["commit"] else \
        f"commit {str(git['commit'])[:12]}" + (" with uncommitted changes" if git["dirty"] else "")
    lines = [f"lstm-bench {own}, {commit}", f"python {sys.version.split()[0]}"]
    for name, info in registry.FRAMEWORKS.items():
        versions = []
        for package in info.requires:
            try:
                versions.append(f"{package} {metadata.version(package)}")
            except metadata.PackageNotFoundError:
                versions.append(f"{package} not installed")
        missing = any(v.endswith("not installed") for v in versions)
        lines.append(f"{name}: {', '.join(versions)}" + (f" ({info.install_hint})" if missing else ""))
    return "\n".join(lines)


class VersionAction(argparse.Action):
    """--version: argparse's own version action formats a fixed string; this one asks git and
    the package metadata only when the flag is given."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, default: Any = argparse.SUPPRESS,
                 help: str | None = None) -> None:
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        print(version_text())
        parser.exit()
