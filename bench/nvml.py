"""The driver's view of GPU memory (NVML), framework-free and optional.

Allocated (what tensors hold), reserved (what the framework's caching allocator took) and
driver-used (what NVML charges the process: reserved + CUDA context + library workspaces) are
three different numbers; this module gives only the last. It needs the `nvidia-ml-py`
package; without it, or without a GPU, it returns {} and the record says so by omission.
CUDA_DEVICE_ORDER=PCI_BUS_ID (set by the runner) makes NVML's and the framework's GPU 0 agree.
"""
from __future__ import annotations

import os


def process_memory(device_index: int = 0) -> dict[str, int]:
    try:
        import pynvml  # type: ignore[import-not-found]
    except ImportError:
        return {}
    try:
        pynvml.nvmlInit()
        try:
            handle = pynvml.nvmlDeviceGetHandleByIndex(device_index)
            for proc in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
                if proc.pid == os.getpid() and proc.usedGpuMemory is not None:
                    return {"nvml_process_used_bytes": int(proc.usedGpuMemory)}
            return {}
        finally:
            pynvml.nvmlShutdown()
    except pynvml.NVMLError:
        return {}
