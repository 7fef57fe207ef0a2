"""Safe reading of VideoPose3D-style ``.npz`` files.

The public pose files (VideoPose3D, D3DP) store nested dicts as pickled 0-d object arrays, so a
plain ``np.load(..., allow_pickle=True)`` would execute arbitrary code from a downloaded file.
We unpickle object members with an allow-list of exactly the NumPy globals an array needs
(the same idea as ``torch.load(weights_only=True)``); everything else is refused.
"""
from __future__ import annotations

import pickle
import struct
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from d3dp_ktp.atomic import atomic_file

# (module, name) pairs a pickled ndarray / dtype / NumPy scalar refers to, for NumPy 1.x and 2.x.
_NUMPY_MODULES = ("numpy", "numpy.core.multiarray", "numpy._core.multiarray",
                  "numpy.core.numeric", "numpy._core.numeric")
_NUMPY_NAMES = ("_reconstruct", "ndarray", "dtype", "scalar", "_frombuffer")
_OTHER = {("collections", "OrderedDict")}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module in _NUMPY_MODULES and name in _NUMPY_NAMES) or (module, name) in _OTHER:
            if module.startswith("numpy.core") and int(np.__version__.split(".")[0]) >= 2:
                module = module.replace("numpy.core", "numpy._core", 1)  # avoid the deprecated shim
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"refusing to load '{module}.{name}': pose files may only contain arrays, dicts, "
            "lists, strings and numbers")


def _read_object_member(archive: zipfile.ZipFile, member: str) -> Any:
    """Unpickle one ``.npy`` member holding an object array (header skipped, body restricted)."""
    with archive.open(member) as fp:
        major, _ = np.lib.format.read_magic(fp)
        header_len_size = 2 if major == 1 else 4
        (header_len,) = struct.unpack("<H" if major == 1 else "<I", fp.read(header_len_size))
        fp.read(header_len)
        arr = _RestrictedUnpickler(fp, encoding="latin1").load()
    if isinstance(arr, np.ndarray) and arr.dtype == object and arr.shape == ():
        return arr.item()
    return arr


def load_npz(path: str | Path) -> dict[str, Any]:
    """Load every member of an ``.npz`` file; pickled 0-d object arrays come back as their object.

    Raises FileNotFoundError if ``path`` does not exist and ValueError if it is not an npz file or
    contains pickled objects other than arrays/containers.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"file not found: {path}")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is not an .npz archive")
    try:
        with np.load(path, allow_pickle=False) as npz, zipfile.ZipFile(path) as archive:
            out = {}
            for key in npz.files:
                try:
                    out[key] = npz[key]
                except ValueError:  # object array: needs (restricted) unpickling
                    out[key] = _read_object_member(archive, key + ".npy")
            return out
    except (zipfile.BadZipFile, OSError, pickle.UnpicklingError, EOFError) as err:
        raise ValueError(f"{path} is not a readable pose .npz file: {err}") from None


def save_npz(path: str | Path, **members: Any) -> Path:
    """Write a compressed ``.npz`` atomically (dict/list members are pickled as 0-d object arrays).

    The file is written next to ``path`` and renamed into place, so a crash never leaves a
    half-written dataset behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    packed = {}
    for key, value in members.items():
        if isinstance(value, np.ndarray):
            packed[key] = value
        else:
            holder = np.empty((), dtype=object)
            holder[()] = value
            packed[key] = holder
    with atomic_file(path) as tmp, open(tmp, "wb") as fp:
        np.savez_compressed(fp, **packed)
    return path
