"""The export's folder: the files are written into a fresh folder beside the target and
replace it whole once every format has been written and checked, so a failed export (a check,
an op a runtime lacks, a full disk) leaves the target as it was."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from rl_sever.core.disk import WRITE_ERRORS, is_write_error, reason
from rl_sever.core.export import METADATA_FILE
from rl_sever.errors import ConfigError, ExportError

OWN_FORMATS = ("rl_sever exported policy", "rl_sever policy SavedModel")


def is_export(folder: Path) -> bool:
    """Whether `folder` holds an export of rl_sever (which a new export may replace)."""
    try:
        meta = json.loads((folder / METADATA_FILE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("format") in OWN_FORMATS


def target(out: Path) -> Path:
    """`out`, checked: new, empty, or a previous export; its parent made."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"export target {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not is_export(out):
        raise ConfigError(f"export target {out} is a non-empty directory that holds no "
                          "exported policy; choose a new or empty folder")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ExportError(f"cannot write the export into {out.parent}: {reason(e)}") from None
    return out.resolve()


@contextlib.contextmanager
def staged(out: Path) -> Iterator[Path]:
    """A fresh folder to write into; when the block ends without an error, its files become
    `out` (a previous export there is replaced; restored if the swap fails)."""
    inside = False
    try:
        work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    except OSError as e:
        # A parent that cannot be written (a read-only mount above a writable, empty folder).
        if not (out.is_dir() and not any(out.iterdir())):
            raise ExportError(f"cannot write the export into {out.parent}: {reason(e)}") from None
        try:
            work, inside = Path(tempfile.mkdtemp(prefix=".partial-", dir=out)), True
        except OSError as e2:
            raise ExportError(f"cannot write the export into {out}: {reason(e2)}") from None
    os.chmod(work, 0o755)
    try:
        yield work
        _replace(work, out, inside)
    except WRITE_ERRORS as e:
        if not is_write_error(e):
            raise
        raise ExportError(f"writing the export into {out} failed: {reason(e)}; {out} is as it "
                          "was") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _replace(work: Path, out: Path, inside: bool) -> None:
    if inside:
        for path in work.iterdir():
            path.rename(out / path.name)
        return
    backup = out.with_name(f".{out.name}.previous") if out.exists() else None
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)
        out.rename(backup)
    try:
        work.rename(out)
    except OSError:
        if backup is not None:
            backup.rename(out)
        raise
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)
