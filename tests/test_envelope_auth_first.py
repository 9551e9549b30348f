"""A Sentry envelope whose key is only in its header's `dsn` is authenticated before its body
is decompressed: a compression bomb with a wrong key is refused (401) after a few KB of
inflating, where it used to be inflated to the body limit first (413)."""

from __future__ import annotations

import gzip
import tracemalloc
import zlib
from collections.abc import Callable

import brotli
import httpx
import orjson
import pytest
from sqlalchemy import Engine, func, select

from monitoring_core.errors.envelope import (
    BodyTooLarge,
    DecodedBody,
    EnvelopeError,
    UnsupportedEncoding,
)
from monitoring_core.schema import error_events

BOMB_ZEROS = 200 * 2**20  # 200 MiB of zeros: 40x the default 5 MiB body limit
LIMIT = 5 * 2**20


def _header(key: str, host: str = "127.0.0.1") -> bytes:
    return orjson.dumps({"event_id": "a" * 32, "dsn": f"http://{key}@{host}/1"}) + b"\n"


def _gzip_bomb(first_line: bytes) -> bytes:
    comp = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)  # gzip framing
    parts = [comp.compress(first_line)]
    zeros = bytes(2**20)
    parts += [comp.compress(zeros) for _ in range(BOMB_ZEROS // len(zeros))]
    return b"".join([*parts, comp.flush()])


def _brotli_bomb(first_line: bytes) -> bytes:
    comp = brotli.Compressor(quality=5)
    zeros = bytes(2**20)
    parts = [comp.process(first_line)]
    parts += [comp.process(zeros) for _ in range(BOMB_ZEROS // len(zeros))]
    return b"".join([*parts, comp.finish()])


def _raw_deflate(data: bytes) -> bytes:
    comp = zlib.compressobj(wbits=-zlib.MAX_WBITS)  # no zlib header: some clients send this
    return comp.compress(data) + comp.flush()


BOMBS: dict[str, Callable[[bytes], bytes]] = {"gzip": _gzip_bomb, "br": _brotli_bomb}


@pytest.fixture(scope="module")
def bombs() -> dict[tuple[str, str], bytes]:
    """(encoding, which key) -> a bomb whose first line names that key in its dsn."""
    return {}


def _bomb(cache: dict[tuple[str, str], bytes], encoding: str, key: str) -> bytes:
    if (encoding, key) not in cache:
        cache[(encoding, key)] = BOMBS[encoding](_header(key))
    return cache[(encoding, key)]


# ---------------------------------------------------------------- the decoder itself
@pytest.mark.parametrize("encoding", ["gzip", "br"])
def test_reading_the_header_line_inflates_a_few_kb_of_a_bomb(
    bombs: dict[tuple[str, str], bytes], encoding: str
) -> None:
    bomb = _bomb(bombs, encoding, "wrong")
    assert len(bomb) < LIMIT  # it passes the compressed-size limit
    tracemalloc.start()
    try:
        body = DecodedBody(bomb, encoding, max_bytes=LIMIT)
        line = body.first_line()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert orjson.loads(line)["dsn"] == "http://wrong@127.0.0.1/1"
    assert body.decoded <= 64 * 1024  # not 5 MiB, let alone 200
    assert peak < 1024 * 1024
    with pytest.raises(BodyTooLarge):  # reading on is still bounded by the limit
        body.read_all()
    assert LIMIT < body.decoded <= LIMIT + 2 * 2**20  # brotli stops a block past a limit


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", lambda d: _raw_deflate(d)),
        ("br", brotli.compress),
        ("", lambda d: d),
        ("gzip, br", lambda d: brotli.compress(gzip.compress(d))),
    ],
)
def test_it_decodes_every_encoding_line_first_then_whole(
    encoding: str, compress: Callable[[bytes], bytes]
) -> None:
    data = _header("k") + b'{"type":"event"}\n' + orjson.dumps({"x": "y" * 100_000}) + b"\n"
    body = DecodedBody(compress(data), encoding, max_bytes=LIMIT)
    assert body.first_line() == data.split(b"\n", 1)[0]
    assert body.read_all() == data


def test_it_refuses_truncated_unknown_and_headerless_bodies() -> None:
    data = _header("k") + b"x" * 50_000
    with pytest.raises(EnvelopeError, match="truncated"):
        DecodedBody(gzip.compress(data)[:-50], "gzip", max_bytes=LIMIT).read_all()
    with pytest.raises(EnvelopeError, match="cannot be decompressed"):
        DecodedBody(b"not gzip at all", "gzip", max_bytes=LIMIT).first_line()
    with pytest.raises(UnsupportedEncoding):
        DecodedBody(data, "zstd", max_bytes=LIMIT)
    # A first line that never ends is not read past MAX_HEADER_LINE (64 KiB).
    endless = DecodedBody(gzip.compress(b"{" + b" " * 10_000_000), "gzip", max_bytes=LIMIT)
    with pytest.raises(EnvelopeError, match="header line is longer"):
        endless.first_line()
    assert endless.decoded < 128 * 1024


# ---------------------------------------------------------------- through the real server
def _post(server: str, body: bytes, encoding: str) -> httpx.Response:
    headers = {"Content-Type": "application/x-sentry-envelope", "Content-Encoding": encoding}
    return httpx.post(f"{server}/api/1/envelope/", content=body, headers=headers, timeout=30)


@pytest.mark.parametrize("encoding", ["gzip", "br"])
def test_a_bomb_with_a_wrong_dsn_key_is_refused_before_it_is_inflated(
    api_server: str, ingest_key: str, bombs: dict[tuple[str, str], bytes], encoding: str
) -> None:
    # Control: with the right key the same bomb is inflated up to the limit, then refused.
    good = _post(api_server, _bomb(bombs, encoding, ingest_key), encoding)
    assert good.status_code == 413, good.text
    # With a wrong key: 401, which can only come before the body is decompressed (decompressing
    # it would have answered 413, as above). Before the fix this answered 413.
    # (No wall-clock bound: the status alone proves the order, and a timing check failed
    # under load on a shared machine.)
    bad = _post(api_server, _bomb(bombs, encoding, "wrong-key"), encoding)
    assert bad.status_code == 401, bad.text


def test_a_dsn_only_envelope_with_the_right_key_is_stored(
    api_server: str, ingest_key: str, engine: Engine
) -> None:
    event = {"event_id": "b" * 32, "exception": {"values": [{"type": "E", "value": "boom"}]}}
    payload = orjson.dumps(event)
    data = (
        _header(ingest_key)
        + orjson.dumps({"type": "event", "length": len(payload)})
        + b"\n"
        + payload
        + b"\n"
    )
    for encoding, body in (("gzip", gzip.compress(data)), ("br", brotli.compress(data))):
        r = _post(api_server, body, encoding)
        assert r.status_code == 200, r.text
    with engine.connect() as conn:  # the second is the same event id: deduplicated
        assert conn.execute(select(func.count()).select_from(error_events)).scalar_one() == 1
    # A wrong key on a valid envelope: 401, nothing stored.
    r = _post(api_server, gzip.compress(data.replace(ingest_key.encode(), b"nope")), "gzip")
    assert r.status_code == 401
    # A header line that is not JSON: 400 (before any key could be read).
    r = _post(api_server, gzip.compress(b"{not json\n{}\n"), "gzip")
    assert r.status_code == 400
