"""The h2 and hpack internals `adapters/transport/http2_client.py` relies on (its docstring
lists them), checked against the installed h2 and hpack: each test names the internal it
covers, and a failure says that http2_client.py must be reviewed before h2 or hpack is
upgraded."""

from __future__ import annotations

import importlib
import inspect

import h2
import hpack
import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import RequestReceived
from h2.exceptions import H2Error, TooManyStreamsError
from h2.settings import SettingCodes
from hpack import Decoder, NeverIndexedHeaderTuple

from adapters.transport.http2_client import _CountingTable, _H2Connection, _PlainEncoder

REQUEST = [
    (b":method", b"POST"),
    (b":scheme", b"https"),
    (b":authority", b"api.push.apple.com"),
    (b":path", b"/3/device/" + b"ab" * 32),
    (b"apns-topic", b"com.example.app"),
]
NEVER = frozenset({b":path"})


def _changed(internal: str, detail: str) -> str:
    return (
        f"{internal} changed (installed h2 {h2.__version__}, hpack {hpack.__version__}; "
        f"pinned h2==4.4.1, hpack==4.2.0): {detail}. "
        "adapters/transport/http2_client.py relies on it: "
        "review that module before upgrading h2 or hpack."
    )


def _resolve(module: str, qualname: str):
    obj = importlib.import_module(module)
    for part in qualname.split("."):
        if not hasattr(obj, part):
            pytest.fail(_changed(f"{module}.{qualname}", f"{part!r} no longer exists"))
        obj = inspect.getattr_static(obj, part) if inspect.isclass(obj) else getattr(obj, part)
    return obj


def _parameters(function) -> list[str]:
    rendered = []
    for parameter in inspect.signature(function).parameters.values():
        name = parameter.name
        if parameter.kind is parameter.VAR_POSITIONAL:
            name = "*" + name
        elif parameter.kind is parameter.VAR_KEYWORD:
            name = "**" + name
        elif parameter.kind is parameter.KEYWORD_ONLY:
            name = "*, " + name
        if parameter.default is not parameter.empty:
            name += f"={parameter.default!r}"
        rendered.append(name)
    return rendered


@pytest.mark.parametrize(
    ("module", "qualname", "parameters"),
    [
        ("hpack.hpack", "Encoder.__init__", ["self"]),
        ("hpack.hpack", "Encoder.add", ["self", "to_add", "sensitive", "huffman=False"]),
        ("hpack.hpack", "Encoder.encode", ["self", "headers", "huffman=True"]),
        ("hpack.hpack", "Encoder._encode_table_size_change", ["self"]),
        ("hpack.table", "HeaderTable.add", ["self", "name", "value"]),
        ("hpack.hpack", "encode_integer", ["integer", "prefix_bits"]),
        ("h2.connection", "H2Connection._open_streams", ["self", "remainder"]),
        ("h2.connection", "H2Connection._stream_closed_by", ["self", "stream_id"]),
    ],
)
def test_signatures(module, qualname, parameters):
    function = _resolve(module, qualname)
    found = _parameters(function)
    assert found == parameters, _changed(
        f"{module}.{qualname}",
        f"its parameters are ({', '.join(found)}), not ({', '.join(parameters)})",
    )


@pytest.mark.parametrize(
    ("module", "qualname"),
    [
        ("h2.connection", "H2Connection.open_outbound_streams"),
        ("h2.stream", "H2Stream.closed_by"),
        ("hpack.hpack", "Encoder.header_table_size"),
        ("hpack.table", "HeaderTable.maxsize"),
    ],
)
def test_properties(module, qualname):
    assert isinstance(_resolve(module, qualname), property), _changed(
        f"{module}.{qualname}", "it is no longer a property"
    )


def test_our_subclasses_override_what_the_bases_still_define():
    from hpack import Encoder
    from hpack.table import HeaderTable

    for ours, base, names in [
        (_PlainEncoder, Encoder, ["encode"]),
        (_CountingTable, HeaderTable, ["add"]),
        (_H2Connection, H2Connection, ["open_outbound_streams"]),
    ]:
        assert issubclass(ours, base)
        for name in names:
            assert name in vars(base), _changed(f"{base.__module__}.{base.__name__}.{name}", "gone")


def test_encoder_attributes():
    encoder = _PlainEncoder(NEVER)
    assert type(encoder.header_table) is _CountingTable, _changed(
        "hpack Encoder.__init__", "it no longer leaves `header_table` for us to replace"
    )
    assert encoder.table_size_changes == [], _changed(
        "hpack Encoder.table_size_changes", "no longer a list of pending size updates"
    )
    table = encoder.header_table
    assert table.resized is False and len(table.dynamic_entries) == 0, _changed(
        "hpack HeaderTable.resized / dynamic_entries", "not there after __init__"
    )


def test_encoder_add_changes_the_table_only_through_header_table_add():
    encoder = _PlainEncoder()
    table = encoder.header_table
    first = encoder.add((b"apns-topic", b"com.example.app"), False, False)
    assert table.additions == 1 and (b"apns-topic", b"com.example.app") in table.dynamic_entries, (
        _changed("hpack Encoder.add", "a new field reached the table without HeaderTable.add")
    )
    again = encoder.add((b"apns-topic", b"com.example.app"), False, False)
    assert table.additions == 1 and again == b"\xbe" and again != first, _changed(
        "hpack Encoder.add", "a field in the dynamic table no longer encodes to its index (62)"
    )
    encoder.add((b"x-secret", b"s"), True, False)
    assert table.additions == 1, _changed("hpack Encoder.add", "a sensitive field was indexed")


def test_a_table_size_change_is_flagged_and_emitted_first():
    encoder, decoder = _PlainEncoder(NEVER), Decoder()
    assert decoder.decode(encoder.encode(REQUEST), raw=True) == REQUEST
    encoder.header_table_size = 256
    assert encoder.header_table.resized and encoder.table_size_changes == [256], _changed(
        "hpack Encoder.header_table_size / HeaderTable.resized", "a resize is not flagged"
    )
    block = encoder.encode(REQUEST)
    assert block[:3] == b"\x3f\xe1\x01", _changed(
        "hpack Encoder._encode_table_size_change", "it no longer emits `size update 256`"
    )
    assert not encoder.header_table.resized and encoder.table_size_changes == []
    assert decoder.decode(block, raw=True) == REQUEST
    assert decoder.header_table_size == 256


def test_encode_integer():
    from hpack.hpack import encode_integer

    # RFC 7541 C.1.1 and C.1.2.
    assert encode_integer(10, 5) == bytearray(b"\x0a"), _changed("hpack encode_integer", "10")
    assert encode_integer(1337, 5) == bytearray(b"\x1f\x9a\x0a"), _changed(
        "hpack encode_integer", "1337 with a 5-bit prefix"
    )


def _connected_pair() -> tuple[_H2Connection, H2Connection]:
    client = _H2Connection(config=H2Configuration(client_side=True, header_encoding=None))
    client.encoder = _PlainEncoder(NEVER)
    server = H2Connection(config=H2Configuration(client_side=False, header_encoding=None))
    client.initiate_connection()
    server.initiate_connection()
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())
    return client, server


def test_send_headers_encodes_with_connection_encoder_and_peers_decode_it():
    client, server = _connected_pair()
    table = client.encoder.header_table
    for stream_id in (1, 3):
        client.send_headers(stream_id, REQUEST, end_stream=True)
        events = server.receive_data(client.data_to_send())
        received = [e for e in events if isinstance(e, RequestReceived)]
        assert [list(map(tuple, e.headers)) for e in received] == [REQUEST], _changed(
            "h2 H2Connection.encoder", "send_headers did not send what our encoder encoded"
        )
        assert isinstance(received[0].headers[3], NeverIndexedHeaderTuple), _changed(
            "h2 H2Connection.encoder", "the :path went out indexable: not through our encoder"
        )
    # :authority and apns-topic, once; the :path values never.
    assert table.additions == 2, _changed("h2 H2Connection.encoder", "not the encoder h2 used")


def test_a_peers_header_table_size_reaches_our_encoder():
    client, server = _connected_pair()
    server.update_settings({SettingCodes.HEADER_TABLE_SIZE: 256})
    client.receive_data(server.data_to_send())
    assert client.encoder.header_table.maxsize == 256, _changed(
        "h2 H2Connection.encoder", "a peer's SETTINGS_HEADER_TABLE_SIZE no longer resizes it"
    )
    server.receive_data(client.data_to_send())  # the SETTINGS ack
    client.send_headers(1, REQUEST, end_stream=True)
    events = server.receive_data(client.data_to_send())
    assert [list(map(tuple, e.headers)) for e in events if isinstance(e, RequestReceived)] == [
        REQUEST
    ]


def test_send_headers_checks_the_stream_limit_against_open_outbound_streams():
    client, server = _connected_pair()
    server.update_settings({SettingCodes.MAX_CONCURRENT_STREAMS: 1})
    client.receive_data(server.data_to_send())
    client.open_count = 1
    try:
        client.send_headers(1, REQUEST)
    except TooManyStreamsError:
        pass
    else:
        pytest.fail(
            _changed(
                "h2 H2Connection.open_outbound_streams",
                "send_headers no longer reads it to check the peer's stream limit",
            )
        )
    client.open_count = 0
    client.send_headers(1, REQUEST)
    assert 1 in client.streams, _changed("h2 H2Connection.streams", "no entry for a new stream")


def test_a_late_frame_on_a_forgotten_reset_stream_is_ignored():
    client, server = _connected_pair()
    client.send_headers(1, REQUEST)
    server.receive_data(client.data_to_send())
    client.reset_stream(1, ErrorCodes.CANCEL)
    client.forget_stream(1)
    assert 1 not in client.streams and 1 in client._closed_streams, _changed(
        "h2 H2Connection.streams / _closed_streams", "forget_stream did not move the stream"
    )
    # The server answered before it saw the reset.
    server.send_headers(1, [(b":status", b"200")])
    server.send_data(1, b"{}", end_stream=True)
    try:
        events = client.receive_data(server.data_to_send())
    except H2Error as exc:
        pytest.fail(
            _changed(
                "h2 H2Connection._closed_streams / _stream_closed_by",
                f"a late frame on a stream recorded there raised {exc!r}",
            )
        )
    assert events == []


def test_the_closed_stream_bound_applies():
    assert isinstance(vars(H2Connection).get("MAX_CLOSED_STREAMS"), int), _changed(
        "h2 H2Connection.MAX_CLOSED_STREAMS", "no longer a class attribute"
    )
    client = _H2Connection(config=H2Configuration(client_side=True, header_encoding=None))
    client.encoder = _PlainEncoder(NEVER)
    client.initiate_connection()
    closed = client._closed_streams
    assert _H2Connection.MAX_CLOSED_STREAMS == 2**12
    last = 2 * (_H2Connection.MAX_CLOSED_STREAMS + 100) - 1
    for stream_id in range(1, last + 1, 2):
        client.send_headers(stream_id, REQUEST, end_stream=True)
        client.reset_stream(stream_id, ErrorCodes.CANCEL)
        client.forget_stream(stream_id)
    client.data_to_send()
    assert len(client.streams) == 0
    assert len(closed) == _H2Connection.MAX_CLOSED_STREAMS and 1 not in closed and last in closed, (
        _changed(
            "h2 H2Connection._closed_streams / MAX_CLOSED_STREAMS",
            f"{len(closed)} closed streams kept, not our bound of the newest "
            f"{_H2Connection.MAX_CLOSED_STREAMS}",
        )
    )
