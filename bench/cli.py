"""`lstm-bench ...` (the console script) and `python -m bench ...`: parse, dispatch to the
subcommand (bench/commands/, one module each).

Every user error (bad flag, unknown name, missing framework, corrupt data or results file)
is one line on stderr and exit code 2: never a traceback. An interrupted command (Ctrl-C, or
SIGTERM from a CI runner cancelling the job) cleans up and exits 130.
"""
from __future__ import annotations

import contextlib
import faulthandler
import signal
import sys
import threading
from typing import Iterator, Sequence

from . import data, registry
from .records import results
from .commands.parser import PROG, build_parser
from .commands.usage import EXIT_USAGE, UsageError
from .spec import SpecError

EXIT_INTERRUPTED = 130  # 128 + SIGINT, for SIGTERM as well: one code for "stopped, cleaned up, resumable"


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    parser = build_parser(prog)
    with signal_handlers():
        try:
            args = parser.parse_args(argv)
            if args.cmd is None:
                parser.print_help()
                return EXIT_USAGE
            return int(args.func(args) or 0)
        except (UsageError, SpecError, data.DataError, results.ResultsError, registry.UnknownFramework) as e:
            print(f"error: {e}", file=sys.stderr)
            return EXIT_USAGE
        except BrokenPipeError:  # `... | head`: the reader has what it wanted
            return 0
        except OSError as e:
            if e.errno not in results.STORAGE_ERRORS:
                raise  # not the disk: a bug, whose traceback is the useful report
            print(f"error: {results.os_error_line(e)}", file=sys.stderr)
            return EXIT_USAGE
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED


def _terminate(signum: int, frame: object) -> None:
    # CI runners cancel a job with SIGTERM. Python's default would die on the spot, skipping the
    # cleanup a Ctrl-C gets: the run's manifest marked "interrupted" (so --resume works), the
    # workers stopped, and `check --against`'s temporary git worktree removed.
    raise KeyboardInterrupt


@contextlib.contextmanager
def signal_handlers() -> Iterator[None]:
    """SIGTERM as Ctrl-C, and `kill -USR1 PID` printing every thread's Python stack to stderr
    (what a run that seems stuck is doing, without stopping it), for as long as a command runs.
    Installed here rather than in __main__.py, so the console script gets them too; restored
    afterwards, so a program (or test) that calls main() keeps its own."""
    if threading.current_thread() is not threading.main_thread():  # signal.signal works only there
        yield
        return
    previous = signal.signal(signal.SIGTERM, _terminate)
    usr1 = getattr(signal, "SIGUSR1", None)  # not on Windows
    if usr1 is not None:
        try:
            faulthandler.register(usr1, all_threads=True)
        except (AttributeError, ValueError, OSError):  # stderr without a file descriptor (captured): no dump
            usr1 = None
    try:
        yield
    finally:
        if usr1 is not None:
            faulthandler.unregister(usr1)
        signal.signal(signal.SIGTERM, previous)
