"""HPACK Huffman decoding for the fake APNs' HTTP/2 layer (`http2.py`).

APNs clients Huffman-encode header values: the device token in `:path`, the `apns-id` and the
never-indexed provider JWT, on every request. This decoder walks a byte-wide state table built
once from `hpack`'s own nibble table (same results, same errors as `hpack.huffman`), and
remembers recent long inputs, so the JWT repeated on every request decodes once.
"""

from __future__ import annotations

from hpack import huffman_table as _nibbles
from hpack.exceptions import HPACKDecodingError

_CACHE_LIMIT = 4096
_CACHED_MIN_LENGTH = 64  # shorter strings (tokens, ids) rarely repeat: not worth a cache entry


def _byte_rows() -> tuple[list[list[tuple | None]], list[bool]]:
    """Per decoder state, per input byte: (next state's row, bytes emitted) or None; and per
    state whether a string may end there."""
    nibble_table = _nibbles.HUFFMAN_TABLE
    states = len(nibble_table) // 16
    rows: list[list[tuple | None]] = [[] for _ in range(states)]
    accepting: dict[int, bool] = {0: True}
    for state in range(states):
        for byte in range(256):
            current, emitted, entry = state, bytearray(), None
            for nibble in (byte >> 4, byte & 0x0F):
                current, flags, symbol = nibble_table[current * 16 + nibble]
                if flags & _nibbles.HUFFMAN_FAIL:
                    break
                if flags & _nibbles.HUFFMAN_EMIT_SYMBOL:
                    emitted.append(symbol)
            else:
                entry = (current, bytes(emitted))
                complete = bool(flags & _nibbles.HUFFMAN_COMPLETE)
                # Whether a string may end is a property of the state reached, not the path.
                if accepting.setdefault(current, complete) != complete:
                    raise RuntimeError("hpack's Huffman table is not what this decoder expects")
            rows[state].append(entry)
    # Link each entry to its next state's row, so decoding needs no index arithmetic.
    for row in rows:
        for byte, entry in enumerate(row):
            if entry is not None:
                row[byte] = (rows[entry[0]], entry[1])
    return rows, [accepting.get(state, False) for state in range(states)]


_ROWS, _ACCEPTING = _byte_rows()
_START = _ROWS[0]
_ACCEPTING_ROWS = frozenset(id(row) for row, ok in zip(_ROWS, _ACCEPTING, strict=True) if ok)
_cache: dict[bytes, bytes] = {}


def decode_huffman(data: bytes) -> bytes:
    """Decode a Huffman-coded HPACK string; `HPACKDecodingError` if it is not one."""
    if not data:
        return b""
    long = len(data) >= _CACHED_MIN_LENGTH
    if long:
        decoded = _cache.get(data)
        if decoded is not None:
            return decoded
    row, out = _START, bytearray()
    try:
        for byte in data:
            row, emitted = row[byte]
            out += emitted
    except TypeError:  # a None entry: an invalid code (EOS inside the string)
        raise HPACKDecodingError("Invalid Huffman string") from None
    if id(row) not in _ACCEPTING_ROWS:
        raise HPACKDecodingError("Incomplete Huffman string")
    decoded = bytes(out)
    if long:
        if len(_cache) >= _CACHE_LIMIT:
            _cache.clear()
        _cache[data] = decoded
    return decoded
