"""A faster HPACK Huffman decoder for the fake APNs, installed into `hpack` in its process.

Profiling the fake under load showed most of its CPU in `hpack`'s pure-Python decoder, which
walks the code four bits at a time; APNs clients Huffman-encode the never-indexed provider
JWT on every request. This decoder uses a byte-wide table built from hpack's own nibble table
(same results, same errors) and remembers recent inputs, so the repeated JWT decodes once.
"""

from __future__ import annotations

from hpack import hpack as _hpack
from hpack import huffman_table as _nibbles
from hpack.exceptions import HPACKDecodingError

_CACHE_LIMIT = 4096


def _byte_table() -> list[tuple[int, bytes, bool] | None]:
    table: list[tuple[int, bytes, bool] | None] = []
    nibble_table = _nibbles.HUFFMAN_TABLE
    for state in range(len(nibble_table) // 16):
        for byte in range(256):
            current, emitted, entry = state, bytearray(), None
            for nibble in (byte >> 4, byte & 0x0F):
                current, flags, symbol = nibble_table[current * 16 + nibble]
                if flags & _nibbles.HUFFMAN_FAIL:
                    break
                if flags & _nibbles.HUFFMAN_EMIT_SYMBOL:
                    emitted.append(symbol)
            else:
                entry = (current, bytes(emitted), bool(flags & _nibbles.HUFFMAN_COMPLETE))
            table.append(entry)
    return table


_TABLE = _byte_table()
_cache: dict[bytes, bytes] = {}


def decode_huffman(data: bytes | bytearray | memoryview | None) -> bytes:
    if not data:
        return b""
    data = bytes(data)
    decoded = _cache.get(data)
    if decoded is not None:
        return decoded
    table, state, complete, out = _TABLE, 0, False, bytearray()
    for byte in data:
        entry = table[(state << 8) | byte]
        if entry is None:
            raise HPACKDecodingError("Invalid Huffman string")
        state, emitted, complete = entry
        out += emitted
    if not complete:
        raise HPACKDecodingError("Incomplete Huffman string")
    decoded = bytes(out)
    if len(_cache) >= _CACHE_LIMIT:
        _cache.clear()
    _cache[data] = decoded
    return decoded


def install() -> None:
    """Make `hpack` use this decoder (the fake APNs process only needs it)."""
    _hpack.decode_huffman = decode_huffman
