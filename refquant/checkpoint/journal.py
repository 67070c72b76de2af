"""The resumable state of a checkpoint job: a folder ``DST.partial`` beside the destination.

::

    DST.partial/
      plan.json        what the job is: source fingerprint, recipe, options, the work units in order
      journal.jsonl    one JSON line per finished unit: its output tensors (name, kind, shape, bytes)
                       and the CRC-32 of its part file
      parts/NNNNN.bin  the output bytes of unit NNNNN (its tensors back to back)

A part file is written to a temporary name, flushed to disk and renamed; only then is its
journal line appended and flushed. A kill at any moment therefore leaves every journal
line backed by a complete part; a part without a line (killed between the rename and the
append) or a torn last line is simply redone. Work is deterministic, so a resumed job
produces the same bytes as an uninterrupted one. The destination itself is written last,
from the parts, to a temporary file that is renamed into place (:func:`atomic_path`), and
the folder is removed after that.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import sys
import time
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TextIO

import numpy as np

from refquant.errors import RefquantError

__all__ = ["Journal", "PartTensor", "JournalError", "Progress", "atomic_path"]

_FORMAT = 1
_CHUNK = 1 << 24  # bytes per read when copying a part into the destination


class JournalError(RefquantError, ValueError):
    """``DST.partial`` belongs to a different job, or a part file does not match its journal line."""


@dataclass(frozen=True)
class PartTensor:
    """One output tensor of a finished unit: ``kind`` is a ggml type or safetensors dtype name."""

    name: str
    kind: str
    shape: tuple[int, ...]
    nbytes: int


class Journal:
    """Open (or create) ``DST.partial`` for a plan; see the module docstring.

    Parameters
    ----------
    dst : path
        The destination (file or folder).
    plan : dict
        JSON-serializable description of the job; a rerun must pass the same plan.
    restart : bool
        Discard an existing ``DST.partial`` instead of resuming it.

    Raises
    ------
    JournalError
        ``DST.partial`` exists with a different plan (and ``restart`` is False).
    """

    def __init__(self, dst: str | os.PathLike[str], plan: dict[str, Any], restart: bool = False) -> None:
        self.dst = Path(dst)
        self.folder = self.dst.with_name(self.dst.name + ".partial")
        plan = {"format": _FORMAT, **plan}
        text = json.dumps(plan, sort_keys=True)
        if restart and self.folder.exists():
            shutil.rmtree(self.folder)
        plan_file = self.folder / "plan.json"
        if plan_file.is_file():
            if plan_file.read_text() != text:
                raise JournalError(f"{self.folder} holds an unfinished job with a different source, recipe or options; "
                                   f"rerun with the same arguments to finish it, or restart (--restart) to discard it")
        else:
            (self.folder / "parts").mkdir(parents=True, exist_ok=True)
            with _atomic_open(plan_file, "w") as f:
                f.write(text)
        self.done: dict[int, tuple[list[PartTensor], int]] = self._read_journal()
        self._log: TextIO = open(self.folder / "journal.jsonl", "a", encoding="utf-8")

    def _read_journal(self) -> dict[int, tuple[list[PartTensor], int]]:
        path = self.folder / "journal.jsonl"
        done: dict[int, tuple[list[PartTensor], int]] = {}
        if not path.is_file():
            return done
        good = 0
        with open(path, "rb") as f:
            for line in f:
                try:
                    entry = json.loads(line)
                    tensors = [PartTensor(n, k, tuple(s), b) for n, k, s, b in entry["tensors"]]
                    unit, crc = int(entry["unit"]), int(entry["crc32"])
                except (ValueError, KeyError, TypeError):
                    break  # a torn last line: that unit is redone
                if not self.part_path(unit).is_file():
                    break
                done[unit] = (tensors, crc)
                good += len(line)
        if good != path.stat().st_size:
            with open(path, "r+b") as f:
                f.truncate(good)
        return done

    def part_path(self, unit: int) -> Path:
        return self.folder / "parts" / f"{unit:05d}.bin"

    def record(self, unit: int, tensors: list[tuple[str, str, tuple[int, ...], np.ndarray]]) -> None:
        """Store a finished unit's output tensors (name, kind, shape, uint8 bytes), then journal it.

        Raises
        ------
        OSError
            The part cannot be written (a full disk, ...): the message names the tensors; the
            journal is unchanged, so rerunning after freeing space resumes here.
        """
        path = self.part_path(unit)
        crc = 0
        try:
            with _atomic_open(path, "wb") as f:
                for _, _, _, data in tensors:
                    buf = memoryview(np.ascontiguousarray(data).reshape(-1).view(np.uint8))
                    f.write(buf)
                    crc = zlib.crc32(buf, crc)
        except OSError as exc:
            names = ", ".join(repr(t[0]) for t in tensors)
            raise OSError(exc.errno or errno.EIO, f"writing {names} to {path} failed: {exc.strerror or exc}; "
                          f"finished work is kept in {self.folder}: free space and rerun to resume") from exc
        entry = {"unit": unit, "crc32": crc,
                 "tensors": [[n, k, [int(d) for d in s], int(np.asarray(d).nbytes)] for n, k, s, d in tensors]}
        self._log.write(json.dumps(entry) + "\n")
        self._log.flush()
        os.fsync(self._log.fileno())
        self.done[unit] = ([PartTensor(n, k, tuple(s), b) for n, k, s, b in entry["tensors"]], crc)

    def read_part(self, unit: int) -> Iterator[tuple[PartTensor, Iterator[bytes]]]:
        """The tensors of a finished unit with an iterator over each one's bytes (CRC checked at the end)."""
        tensors, crc = self.done[unit]
        with open(self.part_path(unit), "rb") as f:
            state = {"crc": 0}

            def chunks(n: int, last: bool) -> Iterator[bytes]:
                while n:
                    b = f.read(min(n, _CHUNK))
                    if not b:
                        raise JournalError(f"{self.part_path(unit)} is shorter than its journal line says")
                    state["crc"] = zlib.crc32(b, state["crc"])
                    n -= len(b)
                    yield b
                if last and (state["crc"] != crc or f.read(1)):
                    raise JournalError(f"{self.part_path(unit)} does not match its journal line (corrupted); "
                                       f"delete it, or restart the job")

            for k, t in enumerate(tensors):
                yield t, chunks(t.nbytes, k == len(tensors) - 1)

    def finish(self) -> None:
        """Remove ``DST.partial`` (after the destination is in place)."""
        self._log.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    def close(self) -> None:
        self._log.close()


@contextlib.contextmanager
def _atomic_open(path: Path, mode: str) -> Iterator[Any]:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside ``path`` (file or folder) that is renamed onto ``path`` on success.

    An existing ``path`` is replaced only after the new one is complete; on error the
    temporary is removed and ``path`` is untouched.

    Parameters
    ----------
    path : str or os.PathLike
        The file or folder to create or replace; its parent folder must exist.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield tmp
        if tmp.is_dir():
            if path.exists():
                old = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.old")
                os.replace(path, old)
                os.replace(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, path)
        else:
            os.replace(tmp, path)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise


class Progress:
    """A one-line progress bar with rate and ETA on stderr, weighted by work (e.g. source bytes).

    ``enabled=None`` shows it only when the stream is a terminal.
    """

    def __init__(self, total: float, enabled: bool | None = None, stream: BinaryIO | TextIO | None = None,
                 unit: str = "B", width: int = 24) -> None:
        self.stream: Any = sys.stderr if stream is None else stream
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)()) if enabled is None else enabled
        self.total, self.width, self.unit = max(float(total), 1.0), width, unit
        self.done = 0.0
        self.skipped = 0.0  # resumed work does not count towards the rate
        self.start = time.perf_counter()

    def skip(self, amount: float) -> None:
        self.done += amount
        self.skipped += amount

    def advance(self, amount: float, label: str = "") -> None:
        self.done += amount
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.start
        rate = (self.done - self.skipped) / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        filled = int(self.width * self.done / self.total)
        bar = "#" * filled + "-" * (self.width - filled)
        eta_s = "?" if eta == float("inf") else f"{eta:,.0f}s"
        self.stream.write(f"\r[{bar}] {100 * self.done / self.total:5.1f}% {_human(rate)}{self.unit}/s "
                          f"ETA {eta_s:>7} {label:<36.36}")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write(f"\n{_human(self.done)}{self.unit} in {time.perf_counter() - self.start:,.1f}s\n")
            self.stream.flush()


def _human(x: float) -> str:
    for prefix in ("", "k", "M", "G", "T"):
        if abs(x) < 1000:
            return f"{x:,.1f} {prefix}"
        x /= 1000
    return f"{x:,.1f} P"
