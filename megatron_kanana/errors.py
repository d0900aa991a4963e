"""What the `kanana` error boundary (cli.py) treats as a bad input rather than a crash.

The project's own errors (ConfigError, CheckpointError, DatasetError, TokenizerError,
BadInputError, ... — all ValueError or CheckpointError) and the third-party errors a
bad file causes: a missing or unreadable path, a truncated stream (EOFError, gzip),
invalid JSON or UTF-8 (ValueError subclasses), a refused pickle, a corrupt
safetensors file. Each becomes one line naming the file; anything else is a bug and
keeps its traceback.
"""
from __future__ import annotations

import gzip
import os
import pickle
import shutil
import zlib
from pathlib import Path

from megatron_kanana.checkpointing.layout import CheckpointError, PARTIAL


def _safetensors_error() -> tuple[type, ...]:
    try:
        from safetensors import SafetensorError
    except ImportError:
        return ()
    return (SafetensorError,)


USER_ERRORS: tuple[type[BaseException], ...] = (
    ValueError, CheckpointError, EOFError, gzip.BadGzipFile, zlib.error, pickle.UnpicklingError,
    FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError, FileExistsError,
) + _safetensors_error()


def describe(e: BaseException) -> str:
    """One line: the message, with the file for OS errors; no chained context."""
    if isinstance(e, OSError) and e.filename and not isinstance(e, gzip.BadGzipFile):
        return f"{e.filename}: {e.strerror or e}"
    text = str(e).strip() or type(e).__name__
    return " ".join(text.split("\n")[:1]) if len(text) > 2000 else text.replace("\n", " ")


class OutputGuard:
    """The outputs a command is about to write (its --output / --output-dir / --output-prefix):
    on failure, OUT.partial and a checkpoint root's iter_*.partial that appeared are removed,
    and so is an output directory the command created and left empty."""

    KEYS = ("output", "output_dir", "out", "output_prefix")

    def __init__(self, paths: list[Path]):
        self.paths = paths
        self.existed = {p: p.exists() for p in paths}
        self.partials_before = {q for p in paths for q in self._partials(p)}

    @classmethod
    def of(cls, args) -> "OutputGuard":
        return cls([Path(v) for k in cls.KEYS if isinstance(v := getattr(args, k, None), (str, os.PathLike))])

    @staticmethod
    def _partials(path: Path) -> list[Path]:
        found = [path.with_name(path.name + PARTIAL)] if path.name else []
        if path.is_dir():
            found += list(path.glob(f"iter_*{PARTIAL}"))
        return [q for q in found if q.exists()]

    def clean(self) -> None:
        for path in self.paths:
            for q in self._partials(path):
                if q not in self.partials_before:
                    shutil.rmtree(q, ignore_errors=True) if q.is_dir() else q.unlink(missing_ok=True)
            if not self.existed[path] and path.is_dir() and not any(path.iterdir()):
                path.rmdir()
