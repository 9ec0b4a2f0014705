"""The one Hugging Face ``datasets`` loader, for corpora (``data.corpus``: formats ``hub`` and ``disk``) and
task splits (the ``datasets`` task reader): a ``save_to_disk`` folder (a Dataset or a DatasetDict), one
Parquet / JSON Lines / CSV file, or a hub id (which needs a network or the local hub cache). Every failure is a
LongAdaptError that names the source and what to do offline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from longadapt.errors import LongAdaptError

FILE_BUILDERS = {".parquet": "parquet", ".json": "json", ".jsonl": "json", ".gz": "json", ".csv": "csv"}
OFFLINE = ("offline, save it with datasets' save_to_disk and point at that folder; a hub dataset that needs a "
           "loading script may have a Parquet conversion (revision: refs/convert/parquet)")


def load_split(source: str | Path | None, split: str | None, *, hub_id: str | None = None, name: str | None = None,
               revision: str | None = None, data_files: Any = None, hub: bool = False) -> Any:
    """One split of a dataset. ``source``: a local folder or file (tried first), else the hub id ``hub_id``
    (or ``source`` itself with ``hub=True``); ``name`` is the hub configuration. A DatasetDict gives its
    ``split``."""
    import datasets

    local = Path(source) if source is not None and not hub else None
    what = hub_id or source
    try:
        if local is not None and local.is_dir():
            if not ((local / "dataset_dict.json").is_file() or (local / "state.json").is_file()):
                raise LongAdaptError(f"{local}: not a folder written by datasets' save_to_disk (no dataset_dict.json "
                                     "or state.json); point at a save_to_disk folder or at one Parquet / JSON Lines "
                                     "file")
            ds = datasets.load_from_disk(str(local))
        elif local is not None and local.is_file():
            suffix = local.suffix.lower()
            if suffix not in FILE_BUILDERS:
                raise LongAdaptError(f"{local}: unknown dataset file type {suffix!r}; use one of "
                                     f"{', '.join(sorted(FILE_BUILDERS))}")
            ds = datasets.load_dataset(FILE_BUILDERS[suffix], data_files=str(local), split="train")
        elif hub_id or hub:
            ds = datasets.load_dataset(str(what), name, split=split, data_files=data_files, revision=revision)
        else:
            raise LongAdaptError(f"{local}: does not exist; check the data path, or give a hub id")
    except LongAdaptError:
        raise
    except Exception as exc:  # network, unknown dataset or config, gated repository, script datasets
        raise LongAdaptError(f"{what}: cannot load the dataset (config {name!r}, split {split!r}; "
                             f"{type(exc).__name__}: {exc}); {OFFLINE}") from exc
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise LongAdaptError(f"{what}: no split {split!r} (the dataset has {', '.join(ds)}); name one of them")
        ds = ds[split]
    return ds
