"""The hpack internals `adapters/transport/http2_client.py` relies on (its docstring lists
them), checked against the installed hpack: each test names the internal it covers, and a
failure says that http2_client.py must be reviewed before hpack is upgraded."""

from __future__ import annotations

import importlib
import inspect

import hpack
import pytest
from hpack import Decoder

from adapters.transport.http2_client import _CountingTable, _PlainEncoder

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
        f"{internal} changed (installed hpack {hpack.__version__}, pinned hpack==4.2.0): "
        f"{detail}. adapters/transport/http2_client.py relies on it: "
        "review that module before upgrading hpack."
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
