"""remotedialer frames: Go vectors byte for byte, round trips over int64, and decode never crashes."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scaleagent.remotedialer.frames import (
    INT64_MAX,
    INT64_MIN,
    FrameError,
    Message,
    MessageType,
    connect_payload,
    decode,
    decode_connection_ids,
    encode,
    encode_connection_ids,
    error_text,
    next_message_id,
    parse_connect,
)

# (hex, message).  The first three were produced by Rancher's Go encoder (issue 3 and
# rancher-protocol.md §3.1); the others are written out by hand from Go's binary.PutVarint
# (zigzag, then 7-bit groups, low first) so that every type has a vector.
SYNC_2_7 = "02000000000000000700000000000000"
VECTORS = [
    ("020404b0ea01" + b"tcp/10.43.0.1:443".hex(), Message(1, 2, MessageType.CONNECT, b"tcp/10.43.0.1:443")),
    ("0a0406454f46", Message(5, 2, MessageType.ERROR, b"EOF")),
    ("120010" + SYNC_2_7, Message(9, 0, MessageType.SYNC_CONNECTIONS, bytes.fromhex(SYNC_2_7))),
    ("060402b0ea016869", Message(3, 2, MessageType.DATA, b"hi")),
    ("060402b0ea01", Message(3, 2, MessageType.DATA, b"")),
    ("0200086336312f3432", Message(1, 0, MessageType.ADD_CLIENT, b"c61/42")),
    ("02000a6336312f3432", Message(1, 0, MessageType.REMOVE_CLIENT, b"c61/42")),
    ("0e040c", Message(7, 2, MessageType.PAUSE, b"")),
    ("10040e", Message(8, 2, MessageType.RESUME, b"")),
    ("120010", Message(9, 0, MessageType.SYNC_CONNECTIONS, b"")),
    # Negative and extreme ids: -1 -> zigzag 1; 2**62 -> 2**63; int64 max/min -> 2**64-2 / 2**64-1.
    ("010306", Message(-1, -2, MessageType.ERROR, b"")),
    ("80808080808080808001040c", Message(1 << 62, 2, MessageType.PAUSE, b"")),
    ("feffffffffffffffff01ffffffffffffffffff010e", Message(INT64_MAX, INT64_MIN, MessageType.RESUME, b"")),
    # 300 -> zigzag 600 = 0xd8 0x04.
    ("d804d8040678", Message(300, 300, MessageType.ERROR, b"x")),
]


# Printed by a Go 1.19.8 program that writes each header with encoding/binary.PutVarint in the order
# of remotedialer's message.go (id, connID, type, then 15000 on Data/Connect only) and SyncConnections
# ids with binary.LittleEndian.AppendUint64: (id, conn_id, type, payload hex, message hex).
GO_VECTORS = [
    (1, 2, 2, "7463702f31302e34332e302e313a343433", "020404b0ea017463702f31302e34332e302e313a343433"),
    (5, 2, 3, "454f46", "0a0406454f46"),
    (9, 0, 8, "02000000000000000700000000000000", "12001002000000000000000700000000000000"),
    (3, 2, 1, "6869", "060402b0ea016869"),
    (4611686018427387904, 3, 1, "00ff", "808080808080808080010602b0ea0100ff"),
    (-1, -2, 3, "74756e6e656c20646973636f6e6e656374", "01030674756e6e656c20646973636f6e6e656374"),
    (INT64_MAX, INT64_MIN, 7, "", "feffffffffffffffff01ffffffffffffffffff010e"),
    (9000000000, 300, 6, "", "80e8888743d8040c"),
    (1234567890123, 2, 4, "632d61626364652f3432", "9693d89fee470408632d61626364652f3432"),
    (-9000000000, 2, 5, "632d61626364652f3432", "ffe7888743040a632d61626364652f3432"),
    (77, 0, 8, "020000000000000003000000000000000000000000010000ffffffffffffff7f",
     "9a010010020000000000000003000000000000000000000000010000ffffffffffffff7f"),
    (8, 64, 2, "7463702f5b666430303a3a315d3a36343433", "10800104b0ea017463702f5b666430303a3a315d3a36343433"),
]


@pytest.mark.parametrize(("msg_id", "conn_id", "mtype", "payload", "hexdata"), GO_VECTORS)
def test_go_encoder_vectors(msg_id, conn_id, mtype, payload, hexdata):
    message = Message(msg_id, conn_id, mtype, bytes.fromhex(payload))
    assert encode(message).hex() == hexdata
    assert decode(bytes.fromhex(hexdata)) == message


def test_go_sync_vector_ids():
    assert encode_connection_ids([1 << 40, 3, INT64_MAX, 2]).hex() == GO_VECTORS[10][3]


@pytest.mark.parametrize(("hexdata", "message"), VECTORS)
def test_vectors_round_trip_byte_for_byte(hexdata, message):
    data = bytes.fromhex(hexdata)
    assert encode(message) == data
    assert decode(data) == message


def test_every_type_has_a_vector():
    assert {m.type for _, m in VECTORS} == set(MessageType)


def test_connect_vector_payload_helper():
    m = decode(bytes.fromhex("020404b0ea017463702f31302e34332e302e313a343433"))
    assert m.type == MessageType.CONNECT
    assert parse_connect(m.payload) == ("tcp", "10.43.0.1:443")
    assert connect_payload("tcp", "10.43.0.1:443") == m.payload


def test_sync_vector_payload_helper():
    m = decode(bytes.fromhex("12001002000000000000000700000000000000"))
    assert decode_connection_ids(m.payload) == [2, 7]
    assert encode_connection_ids([7, 2]) == m.payload  # sorted ascending on the way out


def test_unknown_type_decodes_as_plain_int():
    m = decode(bytes.fromhex("020412ab"))  # type 9
    assert m == Message(1, 2, 9, b"\xab")
    assert not isinstance(m.type, MessageType)


def test_message_is_immutable():
    m = Message(1, 2, MessageType.DATA, b"x")
    with pytest.raises(AttributeError):
        m.payload = b"y"


@pytest.mark.parametrize(
    ("hexdata", "complaint"),
    [
        ("", "empty"),
        ("80", "truncated message id"),
        ("02", "missing connection id"),
        ("0204", "missing message type"),
        ("020402", "missing deadline"),  # DATA without its deadline varint
        ("020404", "missing deadline"),  # CONNECT without its deadline varint
        ("020402b0", "truncated deadline"),
        ("ffffffffffffffffff02", "over-long message id"),  # 10th byte > 1 overflows 64 bits
        ("ffffffffffffffffffff01", "over-long message id"),  # 11 bytes
    ],
)
def test_malformed_frames_say_what_is_wrong(hexdata, complaint):
    with pytest.raises(FrameError, match=complaint):
        decode(bytes.fromhex(hexdata))


def test_frame_error_is_a_value_error():
    assert issubclass(FrameError, ValueError)


def test_decode_rejects_non_bytes_with_frame_error():
    with pytest.raises(FrameError):
        decode("0204")  # type: ignore[arg-type]


def test_encode_rejects_ids_outside_int64():
    with pytest.raises(ValueError):
        encode(Message(1 << 63, 2, MessageType.DATA, b""))
    with pytest.raises(ValueError):
        encode(Message(1, INT64_MIN - 1, MessageType.DATA, b""))


@pytest.mark.parametrize(
    "payload",
    [b"tcp", b"", b"/10.43.0.1:443", b"tcp/", b"\xff\xfe/x", b"tcp/" + b"a" * 263],
)
def test_parse_connect_refuses_bad_targets(payload):
    with pytest.raises(FrameError):
        parse_connect(payload)


def test_connect_payload_refuses_unencodable_text():
    with pytest.raises(FrameError):
        connect_payload("tcp", "\ud800:1")


def test_parse_connect_splits_at_first_slash_only():
    assert parse_connect(b"unix//var/run/docker.sock") == ("unix", "/var/run/docker.sock")
    assert parse_connect(b"tcp/" + b"a" * 262) == ("tcp", "a" * 262)  # exactly 266 bytes


def test_decode_connection_ids_wants_multiples_of_eight():
    with pytest.raises(FrameError, match="incorrect data format"):
        decode_connection_ids(b"\x01" * 9)
    assert decode_connection_ids(b"") == []
    assert decode_connection_ids((-1).to_bytes(8, "little", signed=True)) == [-1]


def test_error_text_reads_at_most_100_bytes():
    assert error_text(b"EOF") == "EOF"
    assert error_text(b"x" * 150) == "x" * 100
    assert error_text(b"\xff") == "\ufffd"


def test_message_ids_increase_and_stay_in_int64():
    a, b = next_message_id(), next_message_id()
    assert b == a + 1 or (a == INT64_MAX and b == INT64_MIN)
    assert INT64_MIN <= a <= INT64_MAX


int64s = st.integers(min_value=INT64_MIN, max_value=INT64_MAX)


@given(msg_id=int64s, conn_id=int64s, mtype=int64s, payload=st.binary(max_size=200))
def test_round_trip_over_int64(msg_id, conn_id, mtype, payload):
    m = Message(msg_id, conn_id, mtype, payload)
    assert decode(encode(m)) == m


@given(mtype=st.sampled_from(list(MessageType)), conn_id=int64s, payload=st.binary(max_size=64))
def test_round_trip_every_type(mtype, conn_id, payload):
    m = Message(next_message_id(), conn_id, mtype, payload)
    data = encode(m)
    assert decode(data) == m
    assert decode(data).type == int(mtype)


@given(st.binary(max_size=40))
def test_decode_of_random_bytes_is_a_message_or_a_frame_error(data):
    try:
        m = decode(data)
    except FrameError:
        return
    assert isinstance(m, Message)
    assert INT64_MIN <= m.id <= INT64_MAX and INT64_MIN <= m.conn_id <= INT64_MAX


@given(st.lists(int64s, max_size=50))
def test_connection_ids_round_trip_sorted(ids):
    assert decode_connection_ids(encode_connection_ids(ids)) == sorted(ids)


@given(
    st.text(alphabet=st.characters(blacklist_characters="/"), min_size=1, max_size=20),
    st.text(min_size=1, max_size=200),
)
def test_connect_payload_round_trip(proto, address):
    try:
        payload = connect_payload(proto, address)
    except FrameError:
        try:
            assert len(f"{proto}/{address}".encode()) > 266
        except UnicodeEncodeError:
            pass  # a lone surrogate: not sendable, refused with FrameError
        return
    assert parse_connect(payload) == (proto, address)
