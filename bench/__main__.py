import sys

from .cli import main

# The signal handlers (SIGTERM cleanup, SIGUSR1 stack dump) live in cli.main, which the
# `lstm-bench` console script calls too; this only says how the program was called.
sys.exit(main(prog="python -m bench"))
