"""Usage errors: every mistake a user can fix is one line on stderr and exit 2 (bench.cli.main)."""
from __future__ import annotations

import argparse

EXIT_USAGE = 2


class UsageError(Exception):
    pass


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints usage too)
        raise UsageError(f"{self.prog}: {message}")
