"""Host-side tests of the BLE wire rules (no Bluetooth needed): datagram size, INFO, tags."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgebox.ble.layout import (
    TAG_LEN,
    BoxInfo,
    InfoError,
    datagram_size,
    decode_info,
    encode_info,
    split_notification,
)

BOX = BoxInfo(protocol_version=1, box_id="0011223344556677", box_key_hash=bytes(range(32)))


def test_datagram_size_mtu_minus_5_and_512_limit() -> None:
    assert datagram_size(23) == 23 - 5 - TAG_LEN
    assert datagram_size(247) == 242 - TAG_LEN
    assert datagram_size(517) == 512 - TAG_LEN
    assert datagram_size(65535) == 512 - TAG_LEN
    assert datagram_size(0) == datagram_size(23)


def test_info_round_trip() -> None:
    value = encode_info(BOX, b"\x01\x02\x03\x04", 508)
    info = decode_info(value)
    assert info.box == BOX and info.tag == b"\x01\x02\x03\x04" and info.mtu == 508
    assert json.loads(value)["v"] == 1


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"not json",
        b"[]",
        b'{"v": 2}',
        b'{"v": 1, "proto": 1, "box": "b", "key": "00", "tag": "0102", "mtu": 508}',
        b'{"v": 1, "proto": 1, "box": "b", "key": "zz", "tag": "01020304", "mtu": 508}',
        b'{"v": 1, "proto": 1, "box": "b", "key": "00", "tag": "01020304", "mtu": 9999}',
        b'{"v": 1, "proto": "1", "box": "b", "key": "00", "tag": "01020304", "mtu": 508}',
        b"{" + b" " * 500 + b"}",
    ],
)
def test_malformed_info_is_a_typed_error(value: bytes) -> None:
    with pytest.raises(InfoError) as err:
        decode_info(value)
    assert err.value.code == "ble_info_invalid"


@given(st.binary(max_size=600))
def test_decode_info_never_crashes(value: bytes) -> None:
    with contextlib.suppress(InfoError):
        decode_info(value)


def test_box_info_validation() -> None:
    with pytest.raises(InfoError):
        BoxInfo(1, "bad id with spaces", bytes(32))
    with pytest.raises(InfoError):
        BoxInfo(1, "ok", b"")


def test_split_notification_keeps_only_own_tag() -> None:
    assert split_notification(b"ABCDpayload", b"ABCD") == b"payload"
    assert split_notification(b"WXYZpayload", b"ABCD") is None
    assert split_notification(b"AB", b"ABCD") is None
    assert split_notification(b"ABCD", b"ABCD") == b""
