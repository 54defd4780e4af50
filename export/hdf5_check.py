"""Refuse an HDF5 file that reaches outside itself before a library reads it.

The NIR and netx files of a bundle are HDF5. HDF5 can hold soft and external links, datasets whose
bytes live in other files (external storage) and virtual datasets that map other files; h5py
follows all of them on access, so a handed file could make ``nir.read`` or netx's reader open any
file the process can see. :func:`check_self_contained_hdf5` walks the file once, without reading
data, and accepts only hard links to groups and datasets stored inside the file, within bounds
on the number of objects and the bytes a dataset declares.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["MAX_HDF5_OBJECTS", "MAX_HDF5_DATASET_BYTES", "check_self_contained_hdf5"]

MAX_HDF5_OBJECTS = 10_000
"""Groups and datasets in one file; an actor's graph has a few dozen."""
MAX_HDF5_DATASET_BYTES = 256 << 20
"""Bytes one dataset may declare (the bundle's per-file bound)."""


def check_self_contained_hdf5(path: str | Path, max_objects: int = MAX_HDF5_OBJECTS,
                              max_dataset_bytes: int = MAX_HDF5_DATASET_BYTES) -> None:
    """Check that ``path`` is an HDF5 file with only hard links and internally stored datasets.

    :param path: the file
    :param max_objects: most groups plus datasets accepted
    :param max_dataset_bytes: most bytes one dataset may declare (shape x item size)
    :raises ValueError: one line naming the file and the object: not HDF5, a soft or external
        link, external or virtual storage, too many objects, a dataset too large
    """
    import h5py

    path = Path(path)
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise ValueError(f"{path}: not an HDF5 file ({e})") from None
    count = 0
    with f:
        stack = [f]
        while stack:
            group = stack.pop()
            for name in group:
                link = group.get(name, getlink=True)
                where = f"{group.name.rstrip('/')}/{name}"
                if not isinstance(link, h5py.HardLink):
                    raise ValueError(f"{path}: object {where!r} is a {type(link).__name__}; "
                                     "only objects stored in the file are accepted")
                count += 1
                if count > max_objects:
                    raise ValueError(f"{path}: more than {max_objects} objects")
                obj = group[name]
                if isinstance(obj, h5py.Group):
                    stack.append(obj)
                elif isinstance(obj, h5py.Dataset):
                    if obj.external or obj.is_virtual:
                        raise ValueError(f"{path}: dataset {where!r} keeps its data in other files "
                                         "(external or virtual storage)")
                    n_bytes = int(obj.size) * int(obj.dtype.itemsize)
                    if n_bytes > max_dataset_bytes:
                        raise ValueError(f"{path}: dataset {where!r} declares {n_bytes} bytes, more than "
                                         f"{max_dataset_bytes}")
                else:
                    raise ValueError(f"{path}: object {where!r} is a {type(obj).__name__}, not a group or dataset")
