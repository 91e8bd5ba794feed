"""What an error raised by a model says about the accelerator it ran on.

- **Out of memory** (``torch.OutOfMemoryError``, XLA's ``RESOURCE_EXHAUSTED``): this job did not fit next
  to what else ran; the device itself is fine. The job fails with ``model_oom``; the worker goes on.
- **A broken device** (``torch.AcceleratorError`` and the other "CUDA error" failures: an illegal memory
  access, a device-side assert, a lost device, a cuBLAS/cuDNN internal error): CUDA errors of this kind are
  sticky, every later kernel of the process fails too. The job fails with ``device_error`` and the worker
  process stops (handing its other running jobs back), so that its supervisor (the embedded launcher, the
  compose restart policy, Kubernetes) starts a fresh one.

Recognised by type and message, without importing torch or jax here (the shared package needs neither).
"""

from __future__ import annotations

from enum import Enum


class DeviceFault(Enum):
    OUT_OF_MEMORY = "out_of_memory"
    BROKEN = "broken"


_OOM_TYPES = {"OutOfMemoryError"}
_OOM_TEXT = ("out of memory", "resource_exhausted")
_BROKEN_TYPES = {"AcceleratorError"}
_BROKEN_TEXT = (
    "cuda error",
    "device-side assert",
    "illegal memory access",
    "cublas_status",
    "cudnn_status",
    "cudnn error",
    "nccl error",
    "unspecified launch failure",
)


def device_fault(error: BaseException) -> DeviceFault | None:
    """The fault ``error`` shows, or None for an error that says nothing about the device."""
    kind = type(error)
    names = {cls.__name__ for cls in kind.__mro__}
    text = str(error).lower()
    if names & _OOM_TYPES or any(marker in text for marker in _OOM_TEXT):
        return DeviceFault.OUT_OF_MEMORY
    if names & _BROKEN_TYPES or (isinstance(error, RuntimeError) and any(marker in text for marker in _BROKEN_TEXT)):
        return DeviceFault.BROKEN
    return None


def check_device(device: str) -> str | None:
    """Touch ``device`` with a tiny operation and wait for it (what the readiness probe relies on): None
    when it answers, else why not. The CPU is not checked; an accelerator is, through torch (imported
    only then)."""
    if not device.startswith("cuda"):
        return None
    import torch

    try:
        value = torch.ones(1, device=device).add_(1).item()  # .item() waits for the kernel
    except Exception as error:  # a sticky CUDA error, a lost device
        return f"device {device} failed a test operation ({type(error).__name__})"
    if value != 2.0:
        return f"device {device} computed 1 + 1 = {value}"
    return None
