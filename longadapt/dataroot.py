"""The data root: where relative corpus and task paths are looked up (one place, one variable).

``$LONGADAPT_DATA`` when set; else ``../shared/data`` next to the checkout when that folder exists
(the project's data bundle); else none. ``LONGADAPT_SHARED_DATA``, the name the tests and benchmarks
once read, is still accepted, with a warning, when ``LONGADAPT_DATA`` is not set.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)

ENV = "LONGADAPT_DATA"
OLD_ENV = "LONGADAPT_SHARED_DATA"
BUNDLED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
_warned: list[bool] = []


def data_root() -> Path | None:
    value = os.environ.get(ENV)
    if not value and os.environ.get(OLD_ENV):
        value = os.environ[OLD_ENV]
        if not _warned:
            _warned.append(True)
            logger.warning("%s is the old name of %s; set %s=%s instead", OLD_ENV, ENV, ENV, value)
    if value:
        return Path(value).expanduser()
    return BUNDLED if BUNDLED.is_dir() else None
