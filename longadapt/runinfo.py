"""run.json: the exact configuration, package versions and data fingerprints behind an output."""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("longadapt", "torch", "transformers", "tokenizers", "accelerate", "datasets", "spacy", "flash-attn")


def package_versions(names: tuple[str, ...] = PACKAGES, platform_name: bool = True) -> dict[str, str | None]:
    """Python's version (and the platform's), and each installed distribution's of ``names`` (None when
    it is not installed)."""
    out: dict[str, str | None] = {"python": sys.version.split()[0]}
    if platform_name:
        out["platform"] = platform.platform()
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


@functools.lru_cache(maxsize=1)
def code_version() -> dict[str, str | None]:
    """The code that ran: longadapt's version and a sha256 over its Python sources (so that two checkouts
    of one version still differ when their code does)."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for f in sorted(root.rglob("*.py")):
        h.update(str(f.relative_to(root)).encode())
        h.update(f.read_bytes())
    try:
        version = metadata.version("longadapt")
    except metadata.PackageNotFoundError:
        version = None
    return {"longadapt": version, "source_sha256": h.hexdigest()[:16]}


def run_record(command: str, config: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "code": code_version(),
        "command": command,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "argv": sys.argv,
        "config": config,
        "versions": package_versions(),
        **extra,
    }
