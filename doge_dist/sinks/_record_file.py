"""A file written in chunks of whole records, so a failed write never leaves a partial record.

Records are collected as text parts and written about 64 KiB at a time with ``os.write`` (larger
chunks measured slower: the joined text falls out of the CPU cache);
the file position after the last chunk that was written whole is known. When a write fails (the
disk is full, ENOSPC; the file size limit is hit, EFBIG; any other OSError) the file is truncated
back to that position and the error propagates: the file then ends with the last whole record.
With gzip, every chunk is a complete gzip member (concatenated members are one valid gzip file,
RFC 1952), so the cut-back file is valid gzip too.
"""

from __future__ import annotations

import os
import zlib

__all__ = ["RecordFile", "CHUNK_BYTES"]

#: About this many bytes of text go to the file in one write.
CHUNK_BYTES = 64 << 10
_FIRST_CHUNK_PARTS = 1024  # parts before the first write; later ones aim at CHUNK_BYTES


class RecordFile:
    """The pending records (``parts``) and the file they go to.

    The owner appends ``parts_per_record`` text parts per record (and ``extra`` counts parts that
    are no record, such as a CSV header), checks ``len(parts) >= limit`` after each record and
    calls ``write()`` then.
    """

    __slots__ = ("path", "encoding", "gzip_level", "parts", "extra", "limit", "committed", "_fd")

    def __init__(self, path: str, *, append: bool, encoding: str, gzip_level: int | None,
                 parts: list[str] | None = None) -> None:
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
        self._fd: int | None = os.open(path, flags, 0o666)
        self.path = path
        self.encoding = encoding
        self.gzip_level = gzip_level
        self.parts: list[str] = [] if parts is None else parts
        self.extra = 0
        self.limit = _FIRST_CHUNK_PARTS
        try:
            self.committed = os.fstat(self._fd).st_size  # bytes of whole records in the file
        except OSError:
            self.close()
            raise

    def write(self) -> None:
        """Write the pending parts as one chunk and clear them.

        On ``OSError`` the file is cut back to its size before this chunk and the error propagates;
        on ``UnicodeEncodeError`` (a part the encoding cannot hold) the parts before the bad one are
        written and ``UnencodablePart`` tells which part it was. Either way the parts are cleared.
        """
        parts = self.parts
        text = "".join(parts)
        try:
            data = text.encode(self.encoding)
        except UnicodeEncodeError as exc:
            good, bad = _encodable_prefix(parts, self.encoding)
            parts.clear()
            self.extra = 0
            if good:
                self._put(good)
            raise UnencodablePart(bad, exc) from exc
        count = len(parts)
        parts.clear()
        self.extra = 0
        self._put(data)
        if count:  # aim the next chunk at CHUNK_BYTES
            self.limit = max(64, min(1 << 16, count * CHUNK_BYTES // max(1, len(text))))

    def _put(self, data: bytes) -> None:
        if self.gzip_level is not None:
            data = gzip_member(data, self.gzip_level)
        if not data:
            return
        fd = self._fd
        assert fd is not None
        view = memoryview(data)
        try:
            while view:
                written = os.write(fd, view)
                view = view[written:]
        except OSError:
            self.cut_back()
            raise
        self.committed += len(data)

    def finish(self) -> None:
        """At close: an empty gzip file still gets one (empty) member, so it is valid gzip."""
        if self.gzip_level is not None and self.committed == 0 and not self.parts:
            self._put(b"")

    def cut_back(self) -> None:
        """Truncate the file to its whole records (after a failed write)."""
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, self.committed)
            except OSError:  # pragma: no cover - shrinking a regular file does not need space
                pass

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __del__(self) -> None:  # a sink dropped without close(): write what it holds, let go of the fd
        if self._fd is not None:
            try:
                if self.parts:
                    self.write()
            except Exception:  # noqa: BLE001 - nothing to report to at collection time
                pass
            self.close()


class UnencodablePart(Exception):
    """Part ``index`` of a chunk cannot be encoded; the parts before it were written."""

    def __init__(self, index: int, cause: UnicodeEncodeError) -> None:
        super().__init__(f"part {index}: {cause}")
        self.index = index


def gzip_member(data: bytes, level: int) -> bytes:
    """``data`` as one complete gzip member."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, 31)  # 31: gzip header and trailer
    return compressor.compress(data) + compressor.flush()


def _encodable_prefix(parts: list[str], encoding: str) -> tuple[bytes, int]:
    """The encoded parts before the first that ``encoding`` cannot hold, and that part's index."""
    encoded = []
    for index, part in enumerate(parts):
        try:
            encoded.append(part.encode(encoding))
        except UnicodeEncodeError:
            return b"".join(encoded), index
    return b"".join(encoded), len(parts)  # pragma: no cover - the whole text failed, so one part does
