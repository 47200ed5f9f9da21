"""A response body decoded under a byte cap counted on *decoded* bytes. Pure: raw chunks in,
decoded chunks out, no I/O.

httpx decodes ``Content-Encoding: gzip`` one raw chunk at a time with no output limit:
a single 64 KiB read of a gzip bomb becomes 64 MiB before any caller can count it. Here
zlib is asked for at most the bytes still allowed (``max_length``), so a body never
grows past the cap in memory, whatever its compression ratio.

Encodings: ``identity``, ``gzip`` (``x-gzip``) and ``deflate`` (zlib-wrapped or raw, as
httpx reads it), at most one of them: ``bounded_request`` asks for exactly these
(``Accept-Encoding``), and anything else cannot be decoded within a bound here.
"""

from __future__ import annotations

import zlib
from typing import Final

#: what ``bounded_request`` offers servers: the encodings decoded here
ACCEPT_ENCODING: Final = "gzip, deflate"
_GZIP: Final = frozenset({"gzip", "x-gzip"})


class BodyRefused(Exception):
    """The body cannot be read within the rules: too large, or not decodable."""


class BoundedDecoder:
    """Feed raw chunks in order, then ``flush``; raises BodyRefused past ``limit`` decoded
    bytes, on an encoding it cannot bound, or on a corrupt stream."""

    def __init__(self, content_encoding: str | None, limit: int) -> None:
        encodings = [e.strip().lower() for e in (content_encoding or "").split(",")]
        encodings = [e for e in encodings if e and e != "identity"]
        if len(encodings) > 1 or (encodings and encodings[0] not in {*_GZIP, "deflate"}):
            raise BodyRefused(f"unsupported Content-Encoding {content_encoding!r}")
        self._encoding = encodings[0] if encodings else "identity"
        self._limit = limit
        #: decoded bytes so far
        self.size = 0
        self._zlib = self._inflater(self._encoding, raw_deflate=False)
        self._first = True

    @staticmethod
    def _inflater(encoding: str, *, raw_deflate: bool) -> zlib._Decompress | None:
        if encoding in _GZIP:
            return zlib.decompressobj(zlib.MAX_WBITS | 16)
        if encoding == "deflate":
            return zlib.decompressobj(-zlib.MAX_WBITS if raw_deflate else zlib.MAX_WBITS)
        return None

    def feed(self, raw: bytes) -> bytes:
        """The decoded bytes ``raw`` adds."""
        if self._zlib is None:
            return self._count(raw)
        first, self._first = self._first, False
        try:
            return self._inflate(raw)
        except zlib.error as exc:
            if not (first and self._encoding == "deflate"):
                raise BodyRefused(f"{self._encoding} body cannot be decoded") from exc
        # "deflate" is sent raw by some servers (httpx falls back the same way)
        self._zlib = self._inflater("deflate", raw_deflate=True)
        try:
            return self._inflate(raw)
        except zlib.error as exc:
            raise BodyRefused("deflate body cannot be decoded") from exc

    def flush(self) -> bytes:
        """What the decoder still holds, once the raw stream ended."""
        if self._zlib is None:
            return b""
        try:
            return self._count(self._zlib.flush(self._allowance()))
        except zlib.error as exc:
            raise BodyRefused(f"{self._encoding} body cannot be decoded") from exc

    def _inflate(self, raw: bytes) -> bytes:
        assert self._zlib is not None
        out = [self._count(self._zlib.decompress(raw, self._allowance()))]
        while tail := self._zlib.unconsumed_tail:
            out.append(self._count(self._zlib.decompress(tail, self._allowance())))
            if self._zlib.unconsumed_tail == tail and not out[-1]:
                break  # no progress (cannot happen with max_length >= 1; never spin)
        return b"".join(out)

    def _allowance(self) -> int:
        """Output zlib may produce now: one byte past the cap proves the body too large
        (never 0, which zlib reads as "no limit")."""
        return self._limit - self.size + 1

    def _count(self, decoded: bytes) -> bytes:
        self.size += len(decoded)
        if self.size > self._limit:
            raise BodyRefused(f"response body larger than {self._limit} bytes")
        return decoded
