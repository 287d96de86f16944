"""Files written whole or not at all: bytes to ``<name>.tmp``, flushed to disk, renamed over the
target. A write that fails (a full disk, a quota) leaves the old file as it was and no
temporary behind, and says so as ``OutOfSpace`` when space is why."""

from __future__ import annotations

import errno
import io
import os
from pathlib import Path

from workers.errors import OutOfSpace

NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def write_atomic(path: str | Path, data: bytes | str) -> None:
    """``data`` (text as UTF-8) at ``path``, atomically and durably."""
    path = Path(path)
    raw = data.encode() if isinstance(data, str) else bytes(data)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        if err.errno in NO_SPACE:
            raise OutOfSpace(path, len(raw)) from err
        raise


def torch_bytes(payload) -> bytes:
    """A ``torch.save`` payload as bytes (written with ``write_atomic``: torch's own file
    writer reports a full disk as a bare RuntimeError)."""
    import torch

    buf = io.BytesIO()
    torch.save(payload, buf)
    return buf.getvalue()


def write_frames(path: str | Path, frames: list) -> None:
    """``frames`` (ASE ``Atoms``) as one extxyz file, written whole."""
    from ase.io import write

    text = io.StringIO()
    write(text, frames, format="extxyz")
    write_atomic(path, text.getvalue())


def save_figure(fig, path: str | Path, dpi: int = 110) -> None:
    """A matplotlib figure as a PNG, written whole."""
    buf = io.BytesIO()
    fig.savefig(buf, dpi=dpi, format="png")
    write_atomic(path, buf.getvalue())
