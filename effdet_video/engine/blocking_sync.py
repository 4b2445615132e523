"""Threads that wait for the GPU sleep instead of spinning. CUDA's default for a context is to busy-wait
in every synchronisation while it has fewer contexts than cores; with the pipeline's several waiting
threads (prepare's downloads, the engine's results, the writer's copies) that is several cores taken
from the video encoder, which needs nearly all of them. The primary context (torch's) is asked for
blocking synchronisation through the driver API before it is made; torch has no call for it. Events
that the host waits on are made with `blocking=True` for the same reason.
"""
from __future__ import annotations

import ctypes
import functools

CU_CTX_SCHED_BLOCKING_SYNC = 0x04


@functools.cache
def _driver() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None


@functools.cache
def prefer_blocking_sync(device_index: int) -> bool:
    """Ask for blocking synchronisation in GPU `device_index`'s primary context; whether it took (not
    where there is no driver, nor once the context is made with other flags)."""
    driver = _driver()
    if driver is None or driver.cuInit(0) != 0:
        return False
    device = ctypes.c_int()
    if driver.cuDeviceGet(ctypes.byref(device), device_index) != 0:
        return False
    set_flags = getattr(driver, "cuDevicePrimaryCtxSetFlags_v2", None) or driver.cuDevicePrimaryCtxSetFlags
    return set_flags(device, CU_CTX_SCHED_BLOCKING_SYNC) == 0
