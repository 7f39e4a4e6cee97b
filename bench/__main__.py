import signal
import sys

from .cli import main


def _terminate(signum: int, frame: object) -> None:
    # CI runners cancel a job with SIGTERM. Python's default would die on the spot, skipping the
    # cleanup a Ctrl-C gets: the run's manifest marked "interrupted" (so --resume works), the
    # workers stopped, and `check --against`'s temporary git worktree removed.
    raise KeyboardInterrupt


signal.signal(signal.SIGTERM, _terminate)
if hasattr(signal, "SIGUSR1"):
    # `kill -USR1 PID` prints every thread's Python stack to stderr: what a run that seems stuck
    # is doing, without stopping it.
    import faulthandler

    faulthandler.register(signal.SIGUSR1, all_threads=True)
sys.exit(main())
