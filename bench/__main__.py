import signal
import sys

from .cli import main


def _terminate(signum: int, frame: object) -> None:
    # CI runners cancel a job with SIGTERM. Python's default would die on the spot, skipping the
    # cleanup a Ctrl-C gets: the run's manifest marked "interrupted" (so --resume works), the
    # workers stopped, and `check --against`'s temporary git worktree removed.
    raise KeyboardInterrupt


signal.signal(signal.SIGTERM, _terminate)
sys.exit(main())
