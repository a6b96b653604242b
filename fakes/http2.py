"""A minimal HTTP/2 server connection (RFC 9113) with an HPACK decoder (RFC 7541), for the fake
APNs: exactly what APNs clients do, cheaply.

The `h2` library's per-frame event machinery cost the fake most of its CPU under benchmark
load. This layer parses every frame of a read in one pass, hands each complete request to
`request_received(stream_id, headers, body)` and sends everything the read produced with one
`transport.write`. Responses carry pre-encoded HPACK blocks (literals without indexing, see
`encode_literal`), so no encoder state exists.

Supported: the client preface, SETTINGS (+ACK), PING (+ACK), HEADERS with padding, priority
and CONTINUATION, DATA with padding, RST_STREAM, WINDOW_UPDATE, PRIORITY (ignored), GOAWAY.
Receiving: the connection window is opened to 2^31-1 upfront and topped up in bulk; stream
windows are 2^31-1 (SETTINGS_INITIAL_WINDOW_SIZE), and request bodies are kept only up to
`max_body + 1` bytes. Sending: the client's connection and stream windows and its
MAX_FRAME_SIZE are honoured; DATA that does not fit waits for its WINDOW_UPDATE.
Violations end the connection with GOAWAY (PROTOCOL_ERROR, FRAME_SIZE_ERROR,
COMPRESSION_ERROR, FLOW_CONTROL_ERROR, ...); more than MAX_CONCURRENT_STREAMS open streams get
RST_STREAM REFUSED_STREAM.
"""

from __future__ import annotations

import asyncio
import struct

from hpack.exceptions import HPACKDecodingError
from hpack.table import HeaderTable

from fakes.huffman import decode_huffman

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Frame types
DATA = 0x0
HEADERS = 0x1
PRIORITY = 0x2
RST_STREAM = 0x3
SETTINGS = 0x4
PUSH_PROMISE = 0x5
PING = 0x6
GOAWAY = 0x7
WINDOW_UPDATE = 0x8
CONTINUATION = 0x9

# Flags
END_STREAM = 0x1
ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20

# Error codes
NO_ERROR = 0x0
PROTOCOL_ERROR = 0x1
INTERNAL_ERROR = 0x2
FLOW_CONTROL_ERROR = 0x3
STREAM_CLOSED = 0x5
FRAME_SIZE_ERROR = 0x6
REFUSED_STREAM = 0x7
CANCEL = 0x8
COMPRESSION_ERROR = 0x9
ENHANCE_YOUR_CALM = 0xB

# Settings
SETTINGS_HEADER_TABLE_SIZE = 0x1
SETTINGS_ENABLE_PUSH = 0x2
SETTINGS_MAX_CONCURRENT_STREAMS = 0x3
SETTINGS_INITIAL_WINDOW_SIZE = 0x4
SETTINGS_MAX_FRAME_SIZE = 0x5

MAX_WINDOW = 2**31 - 1
DEFAULT_WINDOW = 65_535
MAX_FRAME_SIZE = 16_384  # what we accept (the default: we never announce more)
MAX_HEADER_BLOCK = 64 * 1024  # HEADERS + CONTINUATION, encoded
HEADER_TABLE_SIZE = 4096  # the default SETTINGS_HEADER_TABLE_SIZE, which we keep
MAX_CONCURRENT_STREAMS = 1000
_REFILL_AT = MAX_WINDOW // 2  # received bytes after which the connection window is topped up
_BUFFER_SIZE = 256 * 1024

_FRAME = struct.Struct(">BHBBL")  # length (high byte, low 16 bits), type, flags, stream id
_SETTING = struct.Struct(">HL")
_U32 = struct.Struct(">L")
_GOAWAY = struct.Struct(">LL")


def frame(frame_type: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    length = len(payload)
    return _FRAME.pack(length >> 16, length & 0xFFFF, frame_type, flags, stream_id) + payload


def settings_frame(settings: dict[int, int]) -> bytes:
    return frame(SETTINGS, 0, 0, b"".join(_SETTING.pack(k, v) for k, v in settings.items()))


# --- HPACK ---------------------------------------------------------------------------------------


def encode_integer(value: int, prefix_bits: int, first_byte: int = 0) -> bytes:
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first_byte | value])
    out, value = bytearray([first_byte | limit]), value - limit
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_literal(name: bytes, value: bytes) -> bytes:
    """One header as an HPACK literal without indexing, new name, no Huffman: stateless."""
    return b"\x00" + encode_integer(len(name), 7) + name + encode_integer(len(value), 7) + value


_STATIC_STATUS = {
    int(v): i for i, (n, v) in enumerate(HeaderTable.STATIC_TABLE, 1) if n == b":status"
}


def encode_status(status: int) -> bytes:
    """`:status` as an indexed static entry when there is one, else a literal (name index 8)."""
    index = _STATIC_STATUS.get(status)
    if index is not None:
        return bytes([0x80 | index])
    value = str(status).encode()
    return encode_integer(8, 4) + encode_integer(len(value), 7) + value


_STATIC = (None, *HeaderTable.STATIC_TABLE)  # HPACK indexes from 1
_STATIC_LENGTH = len(_STATIC)  # 62: the first dynamic index


def _integer(data: bytes, i: int, value: int) -> tuple[int, int]:
    """The continuation bytes of an integer whose prefix was all ones (`value`)."""
    shift = 0
    while True:
        byte = data[i]
        i += 1
        value += (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, i
        shift += 7
        if shift > 28:
            raise HPACKDecodingError("HPACK integer too large")


def _string(data: bytes, i: int) -> tuple[bytes, int]:
    byte = data[i]
    length = byte & 0x7F
    i += 1
    if length == 0x7F:
        length, i = _integer(data, i, length)
    end = i + length
    if end > len(data):
        raise HPACKDecodingError("HPACK string runs past the header block")
    if byte & 0x80:
        return decode_huffman(data[i:end]), end
    return data[i:end], end


class HPACKDecoder:
    """Decodes header blocks into {name: value} (a repeated name keeps its last value)."""

    __slots__ = ("_table", "_size", "_max_size", "_limit")

    def __init__(self, limit: int = HEADER_TABLE_SIZE) -> None:
        self._table: list[tuple[bytes, bytes]] = []  # newest first
        self._size = 0
        self._max_size = limit
        self._limit = limit  # our SETTINGS_HEADER_TABLE_SIZE: no size update may exceed it

    def decode(self, block: bytes) -> dict[bytes, bytes]:
        """`HPACKDecodingError` (or IndexError on truncated input) when the block is bad."""
        headers: dict[bytes, bytes] = {}
        table, size, max_size = self._table, self._size, self._max_size
        i, end = 0, len(block)
        while i < end:
            byte = block[i]
            i += 1
            if byte & 0x80:  # indexed field
                index = byte & 0x7F
                if index == 0x7F:
                    index, i = _integer(block, i, index)
                if index >= _STATIC_LENGTH:
                    name, value = table[index - _STATIC_LENGTH]
                elif index:
                    name, value = _STATIC[index]
                else:
                    raise HPACKDecodingError("HPACK index 0")
                headers[name] = value
                continue
            if byte & 0x40:  # literal with incremental indexing
                index, indexing = byte & 0x3F, True
                if index == 0x3F:
                    index, i = _integer(block, i, index)
            elif byte & 0x20:  # dynamic table size update
                max_size = byte & 0x1F
                if max_size == 0x1F:
                    max_size, i = _integer(block, i, max_size)
                if max_size > self._limit:
                    raise HPACKDecodingError("HPACK table size update over the limit")
                while size > max_size:
                    name, value = table.pop()
                    size -= len(name) + len(value) + 32
                continue
            else:  # literal without indexing (0000) or never indexed (0001)
                index, indexing = byte & 0x0F, False
                if index == 0x0F:
                    index, i = _integer(block, i, index)
            if index >= _STATIC_LENGTH:
                name = table[index - _STATIC_LENGTH][0]
            elif index:
                name = _STATIC[index][0]
            else:
                name, i = _string(block, i)
            # The value string, inline: this is the hot path.
            byte = block[i]
            length = byte & 0x7F
            i += 1
            if length == 0x7F:
                length, i = _integer(block, i, length)
            start, i = i, i + length
            if i > end:
                raise HPACKDecodingError("HPACK string runs past the header block")
            value = decode_huffman(block[start:i]) if byte & 0x80 else block[start:i]
            headers[name] = value
            if indexing:
                entry_size = len(name) + len(value) + 32
                if entry_size > max_size:
                    table.clear()
                    size = 0
                else:
                    table.insert(0, (name, value))
                    size += entry_size
                    while size > max_size:
                        name, value = table.pop()
                        size -= len(name) + len(value) + 32
        self._size, self._max_size = size, max_size
        return headers


# --- Connection ----------------------------------------------------------------------------------


class H2ConnectionError(Exception):
    """A connection error: GOAWAY with `code`, then close."""

    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(message)
        self.code = code


class _Stream:
    __slots__ = ("headers", "body", "length")

    def __init__(self, headers: dict[bytes, bytes]) -> None:
        self.headers = headers
        self.body = b""
        self.length = 0  # bytes received, kept or not


class HTTP2ServerProtocol(asyncio.BufferedProtocol):
    """One server connection. Subclasses implement `request_received` and answer through
    `send_response` (now or later); output is written at the end of each read, or by `flush`."""

    max_body = 1024 * 1024  # request body bytes kept; beyond max_body + 1 they are only counted

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray(_BUFFER_SIZE)
        self._view = memoryview(self._buffer)
        self._buffered = 0  # bytes of an incomplete frame at the start of _buffer
        self._preface = True  # still expecting the client preface
        self._decoder = HPACKDecoder()
        self._streams: dict[int, _Stream] = {}  # receiving the request
        self._answering: set[int] = set()  # request complete, response not (fully) sent
        self._last_stream = 0
        self._block_stream = 0  # stream of a header block awaiting CONTINUATION
        self._block_flags = 0
        self._block = bytearray()
        self._out: list[bytes] = []
        self._closed = False
        self._received = 0  # flow-controlled bytes not yet given back to the client
        self._send_window = DEFAULT_WINDOW
        self._peer_initial_window = DEFAULT_WINDOW
        self._peer_max_frame = MAX_FRAME_SIZE
        self._stream_credit: dict[int, int] = {}  # WINDOW_UPDATEs minus DATA sent, per stream
        self._blocked: dict[int, bytes] = {}  # response DATA waiting for window, in order

    # -- subclass interface --

    def request_received(self, stream_id: int, headers: dict[bytes, bytes], body: bytes) -> None:
        raise NotImplementedError

    def send_response(self, stream_id: int, header_block: bytes, body: bytes = b"") -> bool:
        """Queue a response (HEADERS, then DATA if `body`); False if the stream is gone."""
        if stream_id not in self._answering or self._closed:
            return False
        if not body:
            self._answering.discard(stream_id)
            length = len(header_block)
            self._out.append(
                _FRAME.pack(length >> 16, length & 0xFFFF, HEADERS, 0x5, stream_id) + header_block
            )
            return True
        self._out.append(frame(HEADERS, END_HEADERS, stream_id, header_block))
        size = len(body)
        if (
            not self._blocked
            and size <= self._send_window
            and size <= self._peer_max_frame
            and size <= self._peer_initial_window + self._stream_credit.get(stream_id, 0)
        ):
            self._send_window -= size
            self._answering.discard(stream_id)
            self._stream_credit.pop(stream_id, None)
            self._out.append(frame(DATA, END_STREAM, stream_id, body))
        else:
            self._blocked[stream_id] = body
            self._send_blocked()
        return True

    def flush(self) -> None:
        if self._out:
            data = b"".join(self._out)
            self._out.clear()
            if self.transport is not None:
                self.transport.write(data)

    def is_answering(self, stream_id: int) -> bool:
        return stream_id in self._answering

    # -- asyncio --

    def connection_made(self, transport) -> None:
        self.transport = transport
        self._out.append(
            settings_frame(
                {
                    SETTINGS_MAX_CONCURRENT_STREAMS: MAX_CONCURRENT_STREAMS,
                    SETTINGS_INITIAL_WINDOW_SIZE: MAX_WINDOW,
                }
            )
        )
        self._out.append(frame(WINDOW_UPDATE, 0, 0, _U32.pack(MAX_WINDOW - DEFAULT_WINDOW)))
        self.flush()

    def connection_lost(self, exc) -> None:
        self.transport = None
        self._closed = True

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._view[self._buffered :]

    def buffer_updated(self, nbytes: int) -> None:
        end = self._buffered + nbytes
        data = bytes(self._view[:end])
        try:
            used = self._receive(data)
        except H2ConnectionError as exc:
            self._fail(exc.code)
            return
        except (HPACKDecodingError, IndexError, ValueError):
            self._fail(COMPRESSION_ERROR)
            return
        rest = end - used
        if rest:
            self._buffer[:rest] = data[used:]
        self._buffered = rest
        self.flush()

    def eof_received(self) -> bool:
        return False

    # -- frames --

    def _receive(self, data: bytes) -> int:
        """Handle every complete frame in `data`; return how many bytes were used."""
        pos, end = 0, len(data)
        if self._preface:
            if end < len(PREFACE):
                if not PREFACE.startswith(data):
                    raise H2ConnectionError(PROTOCOL_ERROR, "no HTTP/2 client preface")
                return 0
            if not data.startswith(PREFACE):
                raise H2ConnectionError(PROTOCOL_ERROR, "no HTTP/2 client preface")
            self._preface = False
            pos = len(PREFACE)
        unpack = _FRAME.unpack_from
        while end - pos >= 9 and not self._closed:
            high, low, frame_type, flags, stream_id = unpack(data, pos)
            length = high << 16 | low
            if length > MAX_FRAME_SIZE:
                raise H2ConnectionError(FRAME_SIZE_ERROR, "frame too large")
            start = pos + 9
            if end - start < length:
                break
            pos = start + length
            stream_id &= 0x7FFFFFFF
            if self._block_stream and frame_type != CONTINUATION:
                raise H2ConnectionError(PROTOCOL_ERROR, "expected CONTINUATION")
            if frame_type == HEADERS:
                self._on_headers(data[start:pos], flags, stream_id)
            elif frame_type == DATA:
                self._on_data(data[start:pos], flags, stream_id)
            elif frame_type == WINDOW_UPDATE:
                self._on_window_update(data[start:pos], stream_id)
            elif frame_type == CONTINUATION:
                self._on_continuation(data[start:pos], flags, stream_id)
            elif frame_type == SETTINGS:
                self._on_settings(data[start:pos], flags, stream_id)
            elif frame_type == PING:
                if length != 8:
                    raise H2ConnectionError(FRAME_SIZE_ERROR, "PING must be 8 bytes")
                if stream_id:
                    raise H2ConnectionError(PROTOCOL_ERROR, "PING on a stream")
                if not flags & ACK:
                    self._out.append(frame(PING, ACK, 0, data[start:pos]))
            elif frame_type == RST_STREAM:
                if length != 4:
                    raise H2ConnectionError(FRAME_SIZE_ERROR, "RST_STREAM must be 4 bytes")
                if not stream_id:
                    raise H2ConnectionError(PROTOCOL_ERROR, "RST_STREAM on stream 0")
                self._forget(stream_id)
            elif frame_type == GOAWAY:
                # The client opens no more streams; it is closing. Send what is queued and close.
                self._closed = True
                self.flush()
                if self.transport is not None:
                    self.transport.close()
                return end
            elif frame_type == PRIORITY:
                if length != 5:
                    raise H2ConnectionError(FRAME_SIZE_ERROR, "PRIORITY must be 5 bytes")
            elif frame_type == PUSH_PROMISE:
                raise H2ConnectionError(PROTOCOL_ERROR, "clients must not push")
            # Unknown frame types are ignored, as RFC 9113 asks.
        return pos

    def _on_headers(self, payload: bytes, flags: int, stream_id: int) -> None:
        if not stream_id & 1:  # stream 0 or a server-initiated id
            raise H2ConnectionError(PROTOCOL_ERROR, "HEADERS on an even stream id")
        if flags & PADDED:
            payload = _unpad(payload)
        if flags & PRIORITY_FLAG:
            if len(payload) < 5:
                raise H2ConnectionError(FRAME_SIZE_ERROR, "HEADERS too short for its priority")
            payload = payload[5:]
        if flags & END_HEADERS:
            self._header_block(stream_id, payload, flags & END_STREAM)
        else:
            self._block_stream, self._block_flags = stream_id, flags
            self._block = bytearray(payload)

    def _on_continuation(self, payload: bytes, flags: int, stream_id: int) -> None:
        if not self._block_stream or stream_id != self._block_stream:
            raise H2ConnectionError(PROTOCOL_ERROR, "CONTINUATION without its HEADERS")
        self._block += payload
        if len(self._block) > MAX_HEADER_BLOCK:
            raise H2ConnectionError(ENHANCE_YOUR_CALM, "header block too large")
        if flags & END_HEADERS:
            block, self._block = bytes(self._block), bytearray()
            self._block_stream = 0
            self._header_block(stream_id, block, self._block_flags & END_STREAM)

    def _header_block(self, stream_id: int, block: bytes, end_stream: int) -> None:
        # Decoded even for a refused stream: the dynamic table must stay in step.
        headers = self._decoder.decode(block)
        stream = self._streams.get(stream_id)
        if stream is not None:  # trailers
            if not end_stream:
                raise H2ConnectionError(PROTOCOL_ERROR, "trailers must end the stream")
            del self._streams[stream_id]
            self._complete(stream_id, stream)
            return
        if stream_id <= self._last_stream:
            raise H2ConnectionError(STREAM_CLOSED, "HEADERS on a closed stream")
        self._last_stream = stream_id
        if len(self._streams) + len(self._answering) >= MAX_CONCURRENT_STREAMS:
            self._reset(stream_id, REFUSED_STREAM)
            return
        stream = _Stream(headers)
        if end_stream:
            self._complete(stream_id, stream)
        else:
            self._streams[stream_id] = stream

    def _on_data(self, payload: bytes, flags: int, stream_id: int) -> None:
        self._received += len(payload)  # padding included: it is flow-controlled too
        if self._received >= _REFILL_AT:
            self._out.append(frame(WINDOW_UPDATE, 0, 0, _U32.pack(self._received)))
            self._received = 0
        if not stream_id:
            raise H2ConnectionError(PROTOCOL_ERROR, "DATA on stream 0")
        stream = self._streams.get(stream_id)
        if stream is None:
            if stream_id > self._last_stream:
                raise H2ConnectionError(PROTOCOL_ERROR, "DATA on an idle stream")
            if stream_id not in self._answering:  # reset or refused: say so again
                self._reset(stream_id, STREAM_CLOSED)
            return
        if flags & PADDED:
            payload = _unpad(payload)
        if payload:
            stream.length += len(payload)
            kept = len(stream.body)
            if not kept:
                stream.body = payload[: self.max_body + 1]
            elif kept <= self.max_body:
                stream.body += payload[: self.max_body + 1 - kept]
        if flags & END_STREAM:
            del self._streams[stream_id]
            self._complete(stream_id, stream)

    def _on_window_update(self, payload: bytes, stream_id: int) -> None:
        if len(payload) != 4:
            raise H2ConnectionError(FRAME_SIZE_ERROR, "WINDOW_UPDATE must be 4 bytes")
        increment = _U32.unpack(payload)[0] & 0x7FFFFFFF
        if not stream_id:
            if not increment:
                raise H2ConnectionError(PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
            self._send_window += increment
            if self._send_window > MAX_WINDOW:
                raise H2ConnectionError(FLOW_CONTROL_ERROR, "connection window over 2^31-1")
        elif stream_id in self._answering or stream_id in self._streams:
            if not increment:
                self._reset(stream_id, PROTOCOL_ERROR)
                return
            credit = self._stream_credit.get(stream_id, 0) + increment
            if self._peer_initial_window + credit > MAX_WINDOW:
                self._reset(stream_id, FLOW_CONTROL_ERROR)
                return
            self._stream_credit[stream_id] = credit
        if self._blocked:
            self._send_blocked()

    def _on_settings(self, payload: bytes, flags: int, stream_id: int) -> None:
        if stream_id:
            raise H2ConnectionError(PROTOCOL_ERROR, "SETTINGS on a stream")
        if flags & ACK:
            if payload:
                raise H2ConnectionError(FRAME_SIZE_ERROR, "SETTINGS ACK with a payload")
            return
        if len(payload) % 6:
            raise H2ConnectionError(FRAME_SIZE_ERROR, "SETTINGS not a multiple of 6 bytes")
        for key, value in _SETTING.iter_unpack(payload):
            if key == SETTINGS_INITIAL_WINDOW_SIZE:
                if value > MAX_WINDOW:
                    raise H2ConnectionError(FLOW_CONTROL_ERROR, "initial window over 2^31-1")
                self._peer_initial_window = value
            elif key == SETTINGS_MAX_FRAME_SIZE:
                if not MAX_FRAME_SIZE <= value <= 2**24 - 1:
                    raise H2ConnectionError(PROTOCOL_ERROR, "bad SETTINGS_MAX_FRAME_SIZE")
                self._peer_max_frame = value
            elif key == SETTINGS_ENABLE_PUSH and value > 1:
                raise H2ConnectionError(PROTOCOL_ERROR, "bad SETTINGS_ENABLE_PUSH")
            # HEADER_TABLE_SIZE bounds an encoder table we never use; the rest do not apply.
        self._out.append(frame(SETTINGS, ACK, 0))
        if self._blocked:
            self._send_blocked()

    # -- helpers --

    def _complete(self, stream_id: int, stream: _Stream) -> None:
        self._answering.add(stream_id)
        self.request_received(stream_id, stream.headers, stream.body)

    def _send_blocked(self) -> None:
        for stream_id in list(self._blocked):
            body = self._blocked[stream_id]
            while body:
                credit = self._stream_credit.get(stream_id, 0)
                size = min(
                    len(body),
                    self._send_window,
                    self._peer_initial_window + credit,
                    self._peer_max_frame,
                )
                if size <= 0:
                    break
                chunk, body = body[:size], body[size:]
                self._send_window -= size
                self._stream_credit[stream_id] = credit - size
                self._out.append(frame(DATA, 0 if body else END_STREAM, stream_id, chunk))
            if body:
                self._blocked[stream_id] = body
                if self._send_window <= 0:
                    return
            else:
                del self._blocked[stream_id]
                self._answering.discard(stream_id)
                self._stream_credit.pop(stream_id, None)

    def _forget(self, stream_id: int) -> None:
        self._streams.pop(stream_id, None)
        self._answering.discard(stream_id)
        self._blocked.pop(stream_id, None)
        self._stream_credit.pop(stream_id, None)

    def _reset(self, stream_id: int, code: int) -> None:
        self._forget(stream_id)
        self._out.append(frame(RST_STREAM, 0, stream_id, _U32.pack(code)))

    def _fail(self, code: int) -> None:
        """A connection error: GOAWAY naming the last stream we saw, then close."""
        if self._closed:
            return
        self._closed = True
        self._out.append(frame(GOAWAY, 0, 0, _GOAWAY.pack(self._last_stream, code)))
        self.flush()
        if self.transport is not None:
            self.transport.close()


def _unpad(payload: bytes) -> bytes:
    if not payload:
        raise H2ConnectionError(FRAME_SIZE_ERROR, "padded frame without a pad length")
    padding = payload[0]
    if padding >= len(payload):
        raise H2ConnectionError(PROTOCOL_ERROR, "padding longer than the frame")
    return payload[1 : len(payload) - padding]
