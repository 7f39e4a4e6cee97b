"""Cells that cannot run here, found before anything starts: a batch larger than the training set,
or a model whose analytic memory floor (bench.analytic: parameters, gradients, Adam's two moments
and the activations backprop keeps) exceeds this machine's memory. `run --dry-run` lists them;
`run` refuses them (one line, exit 2) instead of spending a worker on a certain failure."""
from __future__ import annotations

from ..analytic import cost
from ..spec import Cell

GB = 1e9


def machine_memory_bytes() -> int | None:
    """Physical memory of this machine (what a CPU cell's floor must fit), None if unknown."""
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except Exception:  # noqa: BLE001 - psutil missing or unreadable in a container: nothing to flag
        return None


def refusals(cells: list[Cell], data_path: str | None, memory_bytes: int | None = -1,
             n_train: int | None = None) -> list[str]:
    """One line per cell that cannot run (the reason, with its numbers); [] when all can.
    `memory_bytes` -1 reads this machine's; GPU cells are not judged on memory (the card's size
    is the worker's to read)."""
    if memory_bytes == -1:
        memory_bytes = machine_memory_bytes()
    if n_train is None:
        from .. import data

        n_train = data.load(data_path).n_train
    out = []
    for c in cells:
        if c.train.batch_size > n_train:
            out.append(f"{c.key}: batch size {c.train.batch_size:,} is larger than the training set "
                       f"({n_train:,} samples)")
            continue
        floor = cost(c.model).train_floor_bytes(c.train.batch_size)
        if c.device == "cpu" and memory_bytes and floor > memory_bytes:
            out.append(f"{c.key}: its analytic memory floor is {floor / GB:,.1f} GB (parameters, gradients, Adam "
                       f"state, activations) and this machine has {memory_bytes / GB:,.1f} GB")
    return out
