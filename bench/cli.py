"""`python -m bench ...` and the `lstm-bench` console script: parse, dispatch to the subcommand
(bench/commands/, one module each).

Every user error (bad flag, unknown name, missing framework, corrupt data or results file)
is one line on stderr and exit code 2: never a traceback.
"""
from __future__ import annotations

import sys
from typing import Sequence

from . import data, registry, results
from .commands.parser import build_parser
from .commands.usage import EXIT_USAGE, UsageError
from .spec import SpecError


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.cmd is None:
            parser.print_help()
            return EXIT_USAGE
        return int(args.func(args) or 0)
    except (UsageError, SpecError, data.DataError, results.ResultsError, registry.UnknownFramework) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
