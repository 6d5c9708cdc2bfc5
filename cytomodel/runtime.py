"""Process-level settings: speed for CPU training and inference, and the one device policy (:func:`resolve_device`).

glibc returns large activation buffers to the OS after every step (a page-fault storm measured at 1.5-2x
slowdown here), so we ask it to keep them. Call :func:`configure_runtime` once, before heavy torch work.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os

_CONFIGURED = False
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


def tune_malloc() -> bool:
    """Stop glibc from mmapping/unmapping big buffers each step. Returns True if applied."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok1 = libc.mallopt(_M_MMAP_MAX, 0)
        ok2 = libc.mallopt(_M_TRIM_THRESHOLD, 2**30)
        return bool(ok1 and ok2)
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to do
        return False


def configure_runtime(threads: int | None = None) -> None:
    """Apply malloc tuning and the torch thread count once per process."""
    global _CONFIGURED
    import torch  # torch when called: the command line and the study app import this module without it

    if threads is None:
        threads = int(os.environ.get("CYTOMODEL_THREADS", "0")) or None
    if threads:
        torch.set_num_threads(threads)
    if not _CONFIGURED:
        tune_malloc()
        _CONFIGURED = True


def default_device() -> "torch.device":
    import torch  # torch when called (see configure_runtime)

    if torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def resolve_device(device: "str | torch.device | None" = None) -> "torch.device":
    """The one device policy: ``None`` or ``"auto"`` is CUDA when present, else the CPU; anything else is that
    device, with a clear error (ValueError) when it is not a torch device or is not available here."""
    import torch  # torch when called (see configure_runtime)

    if device is None or (isinstance(device, str) and device.strip().lower() == "auto"):
        return default_device()
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device {device!r} is not a torch device: use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} was asked for but CUDA is not available on this machine "
                             "(use cpu or auto)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"device {device!r} was asked for but MPS is not available on this machine")
    return dev


def autocast(device: "torch.device", precision: str):
    """A context manager for the requested precision ('bf16', 'fp16' or 'fp32') on this device."""
    import torch  # torch when called (see configure_runtime)

    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    if dtype is None:
        raise ValueError(f"precision must be one of 'bf16', 'fp16', 'fp32', not {precision!r}")
    return torch.autocast(device_type=device.type, dtype=dtype)
