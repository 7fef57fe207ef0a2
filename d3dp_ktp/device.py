"""Which torch device a run uses: the one reading of a device setting ('auto', 'cpu', 'cuda', 'cuda:N')."""
from __future__ import annotations

import re

import torch


def resolve_device(name: str, option: str = "device") -> torch.device:
    """'auto' (CUDA when available, else the CPU), 'cpu', 'cuda' or 'cuda:N' -> torch.device.

    ``option`` is how the user set it ('eval.device', '--device'), so an error names what to change.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name != "cpu" and not re.fullmatch(r"cuda(:\d+)?", name):
        raise ValueError(f"unknown device '{name}' ({option}); use auto, cpu, cuda or cuda:N")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"{option}={name} but CUDA is not available on this machine; use auto or cpu")
    return torch.device(name)
