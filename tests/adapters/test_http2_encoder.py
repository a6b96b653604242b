"""The HTTP/2 client's HPACK encoder: its shortcuts must give blocks that any decoder reads
back as the headers given, and must leave the dynamic table as hpack would."""

import random

from hpack import Decoder

from adapters.transport.http2_client import _PlainEncoder

NEVER = frozenset({b":path", b"apns-id"})


def _request(i: int, auth: bytes = b"bearer one") -> list[tuple[bytes, bytes]]:
    return [
        (b":method", b"POST"),
        (b":scheme", b"https"),
        (b":authority", b"api.push.apple.com"),
        (b":path", b"/3/device/%064x" % i),
        (b"apns-id", b"id-%d" % i),
        (b"apns-topic", b"com.example.app"),
        (b"authorization", auth),
    ]


def test_blocks_decode_to_the_headers_and_unique_values_stay_out_of_the_table():
    encoder, decoder = _PlainEncoder(NEVER), Decoder()
    for i in range(50):
        headers = _request(i)
        assert decoder.decode(encoder.encode(headers), raw=True) == headers
    # Only the shared fields were indexed, once each; the per-request values never were.
    names = {name for name, _value in encoder.header_table.dynamic_entries}
    assert names == {b":authority", b"apns-topic", b"authorization"}
    assert encoder.header_table.additions == 3


def test_a_changed_shared_value_is_indexed_and_later_blocks_still_decode():
    encoder, decoder = _PlainEncoder(NEVER), Decoder()
    for i in range(10):
        assert decoder.decode(encoder.encode(_request(i)), raw=True) == _request(i)
    # A renewed token: a new table entry shifts every dynamic index; kept bytes must go.
    for i in range(10, 20):
        headers = _request(i, auth=b"bearer two")
        assert decoder.decode(encoder.encode(headers), raw=True) == headers
    assert decoder.decode(encoder.encode(_request(20)), raw=True) == _request(20)


def test_random_sequences_with_table_size_changes_decode():
    rng = random.Random(7)
    encoder, decoder = _PlainEncoder(NEVER), Decoder()
    for i in range(300):
        if rng.random() < 0.05:
            encoder.header_table_size = rng.choice([0, 64, 256, 4096])
        headers = _request(rng.randrange(1000), auth=b"bearer %d" % rng.randrange(4))
        if rng.random() < 0.3:
            headers.append((b"apns-collapse-id", b"c%d" % rng.randrange(3)))
        assert decoder.decode(encoder.encode(headers), raw=True) == headers, i
