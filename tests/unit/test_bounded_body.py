"""tasks.http.body: a response body decoded under a cap counted on decoded bytes."""

from __future__ import annotations

import gzip
import zlib

import pytest

from tasks.http.body import BodyRefused, BoundedDecoder

TEXT = b'{"data": {"order": {"id": "o-1", "note": "' + b"x" * 5000 + b'"}}}'


def deflated(data: bytes, *, raw: bool) -> bytes:
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS if raw else zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


def decode(encoding: str | None, encoded: bytes, limit: int, piece: int = 7) -> bytes:
    """Feed ``encoded`` in small pieces, as a network would deliver it."""
    decoder = BoundedDecoder(encoding, limit)
    out = [decoder.feed(encoded[i : i + piece]) for i in range(0, len(encoded), piece)]
    return b"".join([*out, decoder.flush()])


@pytest.mark.parametrize(
    ("encoding", "encoded"),
    [
        (None, TEXT),
        ("identity", TEXT),
        ("gzip", gzip.compress(TEXT)),
        ("x-gzip", gzip.compress(TEXT)),
        ("GZIP", gzip.compress(TEXT)),
        ("deflate", deflated(TEXT, raw=False)),
        ("deflate", deflated(TEXT, raw=True)),
    ],
)
def test_a_body_of_exactly_the_cap_is_decoded_whole(encoding: str | None, encoded: bytes) -> None:
    assert decode(encoding, encoded, limit=len(TEXT)) == TEXT


@pytest.mark.parametrize(
    ("encoding", "encoded"),
    [
        (None, TEXT),
        ("gzip", gzip.compress(TEXT)),
        ("deflate", deflated(TEXT, raw=False)),
        ("deflate", deflated(TEXT, raw=True)),
    ],
)
def test_one_decoded_byte_past_the_cap_is_refused(encoding: str | None, encoded: bytes) -> None:
    with pytest.raises(BodyRefused, match=f"larger than {len(TEXT) - 1} bytes"):
        decode(encoding, encoded, limit=len(TEXT) - 1)


def test_a_gzip_bomb_never_decodes_past_the_cap() -> None:
    # Given 64 MiB of zeros compressed to about 64 KiB, arriving as one chunk
    bomb = gzip.compress(bytes(64 * 1024 * 1024))
    assert len(bomb) < 100 * 1024
    decoder = BoundedDecoder("gzip", 1024 * 1024)
    # When it is fed
    with pytest.raises(BodyRefused, match="larger than 1048576 bytes"):
        decoder.feed(bomb)
    # Then no more than one byte past the cap was ever produced
    assert decoder.size == 1024 * 1024 + 1


@pytest.mark.parametrize("encoding", ["br", "zstd", "compress", "gzip, gzip", "gzip, br"])
def test_an_encoding_that_cannot_be_bounded_here_is_refused(encoding: str) -> None:
    with pytest.raises(BodyRefused, match="unsupported Content-Encoding"):
        BoundedDecoder(encoding, 1024)


@pytest.mark.parametrize(
    ("encoding", "encoded"),
    [
        ("gzip", b"not gzip at all"),
        ("gzip", gzip.compress(TEXT)[:10] + b"\xff" * 20),  # a reserved block type
        ("deflate", b"\xff\xfe not deflate"),
    ],
)
def test_a_corrupt_stream_is_refused(encoding: str, encoded: bytes) -> None:
    with pytest.raises(BodyRefused, match="cannot be decoded"):
        decode(encoding, encoded, limit=len(TEXT) * 2, piece=len(encoded))
