"""Worker processes: start, watch and kill one cell's worker (spawned cold, or forked from a warm
parent), the versioned job it is given, the duet handshake, the contention watch, and temporary
directories that name their owner. The worker itself stays `bench/worker.py`: `python -m
bench.worker` is the entry point every version of the code shares (check --against runs an older
commit's worker)."""
