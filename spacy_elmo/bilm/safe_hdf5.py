"""Reading HDF5 files from strangers: datasets are data, never pointers.

HDF5 can make a dataset's bytes come from elsewhere: *external storage* (raw bytes of any local
file, a FIFO included), *virtual datasets* (slices of other HDF5 files), and *soft / external
links* (names that resolve to other objects or other files). A weight file from someone else could
use them to read any file on the machine into a model (which `convert`, `to_disk` and `spacy
package` would then copy onward) or to hang the reader on a FIFO. Here every object is reached by
hard links only, and every dataset must keep its bytes in the file itself, with a known filter
and a bounded chunk, before one byte of it is read. docs/security.md lists the checks.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Callable

import h5py
import numpy as np

# Filters a dataset may use (HDF5's own and h5py's lzf). Anything else would make HDF5 look for a
# plugin library; a weight file never needs one.
ALLOWED_FILTERS = {
    h5py.h5z.FILTER_DEFLATE: "gzip",
    h5py.h5z.FILTER_SHUFFLE: "shuffle",
    h5py.h5z.FILTER_FLETCHER32: "fletcher32",
    h5py.h5z.FILTER_SCALEOFFSET: "scaleoffset",
    h5py.h5z.FILTER_NBIT: "nbit",
    32000: "lzf",
}
MAX_CHUNK_ELEMENTS = 1 << 24  # a chunk larger than this and than its dataset is refused (read whole)

ErrorFactory = Callable[[str], Exception]


def open_hdf5(path: Path, error: ErrorFactory, what: str = "HDF5 file") -> h5py.File:
    """Open a regular HDF5 file read-only; anything else (FIFO, device, folder, not HDF5) is `error`."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except OSError as err:
        raise error(f"{path}: cannot read ({err})") from None
    if stat.S_ISDIR(info.st_mode):
        raise error(f"{path}: is a folder, expected an HDF5 {what}")
    if not stat.S_ISREG(info.st_mode):
        raise error(f"{path}: not a regular file (a FIFO, socket or device?): give the HDF5 file itself")
    try:
        return h5py.File(path, "r")
    except (OSError, ValueError, RuntimeError) as err:
        raise error(f"{path}: not a readable HDF5 file (corrupted or truncated?): {err}") from None


def get_dataset(path: Path, fin: h5py.File, name: str, error: ErrorFactory) -> h5py.Dataset | None:
    """The dataset `name`, reached through hard links only and holding its own bytes; None if absent."""
    node: h5py.Group | h5py.Dataset = fin
    link = None
    try:
        for part in name.split("/"):
            if not isinstance(node, h5py.Group):
                return None
            link = node.get(part, getlink=True)  # the link itself: never follows it
            if link is None:
                return None
            if not isinstance(link, h5py.HardLink):
                break
            node = node[part]
    except (OSError, KeyError, ValueError, RuntimeError, TypeError) as err:
        raise error(f"{path}: cannot read '{name}' (corrupted file?): {err}") from None
    # Refused here, outside the try: the error classes are ValueErrors, which the except above
    # would re-word as corruption.
    if not isinstance(link, h5py.HardLink):
        kind = "an external link" if isinstance(link, h5py.ExternalLink) else "a soft link"
        raise error(f"{path}: '{name}' goes through {kind}; a weight file must hold its data itself (refused)")
    if not isinstance(node, h5py.Dataset):
        raise error(f"{path}: '{name}' is a group, expected a dataset")
    check_storage(path, name, node, error)
    return node


def check_storage(path: Path, name: str, dset: h5py.Dataset, error: ErrorFactory) -> None:
    """Refuse a dataset whose bytes live outside the file or need more than bounded work to read."""
    try:
        dcpl = dset.id.get_create_plist()
        layout = dcpl.get_layout()
        n_external = dcpl.get_external_count()
        filters = [dcpl.get_filter(i)[0] for i in range(dcpl.get_nfilters())]
        chunks = dset.chunks
    except (OSError, ValueError, RuntimeError) as err:
        raise error(f"{path}: cannot read '{name}' (corrupted file?): {err}") from None
    if layout == h5py.h5d.VIRTUAL:
        raise error(f"{path}: '{name}' is a virtual dataset (data from other files); refused")
    if n_external:
        raise error(f"{path}: '{name}' uses external storage (its bytes live in another file); refused")
    if layout not in (h5py.h5d.COMPACT, h5py.h5d.CONTIGUOUS, h5py.h5d.CHUNKED):
        raise error(f"{path}: '{name}' has an unknown storage layout ({layout}); refused")
    unknown = [code for code in filters if code not in ALLOWED_FILTERS]
    if unknown:
        raise error(f"{path}: '{name}' needs HDF5 filter(s) {unknown}, which a weight file never uses; refused")
    if chunks is not None and int(np.prod(chunks)) > max(int(np.prod(dset.shape)), MAX_CHUNK_ELEMENTS):
        raise error(f"{path}: '{name}' has chunks {chunks}, larger than the dataset {dset.shape}; refused")


def read_float32(path: Path, name: str, dset: h5py.Dataset, error: ErrorFactory) -> np.ndarray:
    """A float dataset (16, 32 or 64 bit) as float32, finite after the cast (1e300 in float64 is inf)."""
    if dset.dtype.kind != "f" or dset.dtype.itemsize not in (2, 4, 8):
        raise error(f"{path}: dataset '{name}' holds {dset.dtype}, expected float16/32/64")
    try:
        data = dset[...]
    except (OSError, ValueError, RuntimeError, TypeError) as err:
        raise error(f"{path}: cannot read '{name}' (corrupted or truncated file?): {err}") from None
    with np.errstate(over="ignore", invalid="ignore"):
        data = np.ascontiguousarray(data, dtype=np.float32)
    if not np.isfinite(data).all():
        raise error(f"{path}: dataset '{name}' contains NaN or infinite values (as float32)")
    return data
