"""Framing: messages of up to 64 KiB over a datagram link of MTU m, with a windowed ack scheme.

Theory of operation (spec: docs/protocol.md, "Framing"). In the spirit of Matter's BTP. The phone
(central) opens with a capabilities request; the box answers with the agreed version, datagram size
(the smaller of both) and its receive window. After that each side sends *data fragments*, each with
an 8-bit wrapping sequence number, and *acks* naming the last sequence number received. A sender
never has more unacknowledged fragments in flight than the peer's window, which is how back-pressure
reaches the sender end to end (BlueZ and dbus-fast are never overrun). Acks ride on outgoing data
when there is some, or go alone (an ack-only datagram has no sequence number and does not use a
window slot, so acks never need acks). A receiver acks when half its window is used or when a
message completes, so a sender can never stall waiting for an ack that is not coming.

The capabilities exchange carries the protocol version; a box that shares no version with the
phone still answers with its own (so an older phone reports `unsupported_version`), then fails.
The exchanged bytes (`capabilities`) open the handshake transcript, so they cannot be downgraded.
A driver whose application stops taking messages sets `hold_acks`: the framer keeps reading (acks
for our own fragments are always processed) but grants the peer no new window until it is cleared.

Every peer-supplied value (flags, lengths, sequence, ack, window, MTU) is range-checked; any
violation raises `RemoteProtocolError` and the framer fails closed. The framer is sans-I/O: it consumes
and produces bytes and knows nothing of asyncio, BLE or time.
"""

from __future__ import annotations

import struct
from collections import deque
from enum import Enum

from edgebox.session.config import PROTOCOL_VERSION
from edgebox.session.errors import ErrorCode, LocalProtocolError, RemoteProtocolError, SessionError

FLAG_BEGIN = 0x01
FLAG_END = 0x02
FLAG_ACK = 0x04
FLAG_DATA = 0x08
FLAG_CAPS = 0x20
_KNOWN_DATA_FLAGS = FLAG_BEGIN | FLAG_END | FLAG_ACK | FLAG_DATA

MAGIC = b"EB"
FRAMING_VERSION = PROTOCOL_VERSION
MIN_MTU = 20
MAX_MTU = 512
MIN_WINDOW = 2
MAX_WINDOW = 127
DEFAULT_WINDOW = 96
MAX_MESSAGE = 65_535

_CAPS_REQ = struct.Struct(">B2sBBHB")  # flags, magic, version min, version max, mtu, window
_CAPS_RSP = struct.Struct(">B2sBHB")  # flags, magic, version, mtu, window
_U16 = struct.Struct(">H")


class Role(Enum):
    phone = "phone"  # GATT central; sends the capabilities request
    box = "box"  # GATT peripheral; answers it


class FramerState(Enum):
    idle = "idle"  # phone before start()
    await_caps = "await_caps"
    open = "open"
    failed = "failed"


def _fail(code: ErrorCode, message: str) -> SessionError:
    return RemoteProtocolError(code, message)


def _misuse(code: ErrorCode, message: str) -> SessionError:
    return LocalProtocolError(code, message)


class Framer:
    """One end of a framed link. Feed datagrams in, take messages and datagrams out."""

    def __init__(self, role: Role, mtu: int, window: int = DEFAULT_WINDOW) -> None:
        if not MIN_MTU <= mtu <= MAX_MTU:
            raise ValueError(f"mtu must be in [{MIN_MTU}, {MAX_MTU}]")
        if not MIN_WINDOW <= window <= MAX_WINDOW:
            raise ValueError(f"window must be in [{MIN_WINDOW}, {MAX_WINDOW}]")
        self.role = role
        self.state = FramerState.idle if role is Role.phone else FramerState.await_caps
        self.mtu = mtu
        self.local_window = window
        self.peer_window = 0
        self.version = 0
        # Sending side (sequence numbers are unbounded ints here, mod 256 on the wire).
        self._next_seq = 0
        self._acked = 0  # number of our fragments acknowledged (= highest acked seq + 1)
        self._queue: deque[memoryview] = deque()
        self._offset = 0  # bytes of _queue[0] already fragmented
        self._queued_bytes = 0
        self._control: list[bytes] = []  # capabilities response waiting to go out
        self._refusal: list[bytes] = []  # what a failed box still owes an old peer (its version)
        self._caps_request = b""
        self.capabilities = b""  # request | response once open: the handshake transcript's first bytes
        self.hold_acks = False  # set by a driver whose application queue is full
        # Receiving side.
        self._expected_seq = 0
        self._unacked_received = 0
        self._ack_due = False
        self._assembling: bytearray | None = None
        self._assembling_len = 0

    # -- state ---------------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self.state is FramerState.open

    @property
    def in_flight(self) -> int:
        """Our fragments sent but not yet acknowledged."""
        return self._next_seq - self._acked

    @property
    def queued_bytes(self) -> int:
        """Message bytes accepted by send_message() but not yet put into datagrams."""
        return self._queued_bytes

    def _check_usable(self) -> None:
        if self.state is FramerState.failed:
            raise _misuse(ErrorCode.closed, "framer has failed; the link must be closed")

    # -- capabilities --------------------------------------------------------------------------

    def start(self) -> bytes:
        """Phone only: the capabilities request datagram that opens the link."""
        if self.role is not Role.phone or self.state is not FramerState.idle:
            raise _misuse(ErrorCode.unexpected_message, "start() is for a new phone-side framer")
        self.state = FramerState.await_caps
        self._caps_request = _CAPS_REQ.pack(
            FLAG_CAPS, MAGIC, FRAMING_VERSION, FRAMING_VERSION, self.mtu, self.local_window
        )
        return self._caps_request

    def _on_caps(self, datagram: bytes) -> None:
        if self.role is Role.box:
            if len(datagram) != _CAPS_REQ.size:
                raise _fail(ErrorCode.malformed, "capabilities request has the wrong length")
            _flags, magic, vmin, vmax, mtu, window = _CAPS_REQ.unpack(datagram)
            if magic != MAGIC:
                raise _fail(ErrorCode.malformed, "capabilities request has a bad magic")
            if not vmin <= FRAMING_VERSION <= vmax:
                # Answer with our version anyway: an older phone parses this response and reports
                # `unsupported_version` itself instead of seeing the link drop.
                self._refusal = [
                    _CAPS_RSP.pack(FLAG_CAPS, MAGIC, FRAMING_VERSION, self.mtu, self.local_window)
                ]
                raise _fail(ErrorCode.unsupported_version, "no common protocol version")
            self._check_peer_params(mtu, window)
            self.mtu = min(self.mtu, mtu)
            self.peer_window = window
            self.version = FRAMING_VERSION
            response = _CAPS_RSP.pack(FLAG_CAPS, MAGIC, FRAMING_VERSION, self.mtu, self.local_window)
            self._control.append(response)
            self.capabilities = bytes(datagram) + response
        else:
            if len(datagram) != _CAPS_RSP.size:
                raise _fail(ErrorCode.malformed, "capabilities response has the wrong length")
            _flags, magic, version, mtu, window = _CAPS_RSP.unpack(datagram)
            if magic != MAGIC:
                raise _fail(ErrorCode.malformed, "capabilities response has a bad magic")
            if version != FRAMING_VERSION:
                raise _fail(ErrorCode.unsupported_version, "box chose an unsupported framing version")
            self._check_peer_params(mtu, window)
            if mtu > self.mtu:
                raise _fail(ErrorCode.malformed, "box chose a datagram size above ours")
            self.mtu = mtu
            self.peer_window = window
            self.version = version
            self.capabilities = self._caps_request + bytes(datagram)
        self.state = FramerState.open

    @staticmethod
    def _check_peer_params(mtu: int, window: int) -> None:
        if not MIN_MTU <= mtu <= MAX_MTU:
            raise _fail(ErrorCode.malformed, "peer datagram size out of range")
        if not MIN_WINDOW <= window <= MAX_WINDOW:
            raise _fail(ErrorCode.malformed, "peer window out of range")

    # -- receiving -----------------------------------------------------------------------------

    def receive_datagram(self, datagram: bytes) -> list[bytes]:
        """Consume one datagram; return the messages it completed (usually zero or one)."""
        self._check_usable()
        try:
            return self._receive(datagram)
        except SessionError:
            self.state = FramerState.failed
            raise

    def _receive(self, datagram: bytes) -> list[bytes]:
        if not datagram:
            raise _fail(ErrorCode.malformed, "empty datagram")
        if len(datagram) > self.mtu:
            raise _fail(ErrorCode.oversize, "datagram larger than the agreed size")
        flags = datagram[0]
        if flags & FLAG_CAPS:
            if flags != FLAG_CAPS or self.state is not FramerState.await_caps:
                raise _fail(ErrorCode.unexpected_message, "capabilities datagram in the wrong state")
            self._on_caps(datagram)
            return []
        if self.state is not FramerState.open:
            raise _fail(ErrorCode.unexpected_message, "data before capabilities exchange")
        if flags & ~_KNOWN_DATA_FLAGS:
            raise _fail(ErrorCode.malformed, "reserved framing flag set")
        if not flags & FLAG_DATA:
            if flags != FLAG_ACK or len(datagram) != 2:
                raise _fail(ErrorCode.malformed, "ack-only datagram must be exactly flags + ack")
            self._on_ack(datagram[1])
            return []
        pos = 1
        if flags & FLAG_ACK:
            if len(datagram) < 2:
                raise _fail(ErrorCode.malformed, "truncated ack")
            self._on_ack(datagram[1])
            pos = 2
        if len(datagram) < pos + 1:
            raise _fail(ErrorCode.malformed, "truncated sequence number")
        seq = datagram[pos]
        pos += 1
        if seq != self._expected_seq & 0xFF:
            raise _fail(ErrorCode.frame_sequence, "fragment out of sequence")
        self._expected_seq += 1
        self._unacked_received += 1
        if self._unacked_received > self.local_window:
            raise _fail(ErrorCode.frame_window, "peer exceeded our receive window")
        if flags & FLAG_BEGIN:
            if self._assembling is not None:
                raise _fail(ErrorCode.malformed, "new message began before the previous one ended")
            if len(datagram) < pos + 2:
                raise _fail(ErrorCode.malformed, "truncated message length")
            (length,) = _U16.unpack_from(datagram, pos)
            pos += 2
            if length == 0:
                raise _fail(ErrorCode.malformed, "zero-length message")
            self._assembling = bytearray()
            self._assembling_len = length
        elif self._assembling is None:
            raise _fail(ErrorCode.malformed, "continuation fragment without a message")
        payload = datagram[pos:]
        if not payload:
            raise _fail(ErrorCode.malformed, "data fragment without payload")
        buf = self._assembling
        if len(buf) + len(payload) > self._assembling_len:
            raise _fail(ErrorCode.oversize, "fragments exceed the announced message length")
        buf += payload
        if self._unacked_received >= max(1, self.local_window // 2):
            self._ack_due = True
        if flags & FLAG_END:
            if len(buf) != self._assembling_len:
                raise _fail(ErrorCode.malformed, "message ended before its announced length")
            self._assembling = None
            self._ack_due = True
            return [bytes(buf)]
        return []

    def _on_ack(self, ack: int) -> None:
        delta = (ack - self._acked) & 0xFF
        if delta >= self.in_flight:
            raise _fail(ErrorCode.frame_sequence, "ack for a fragment that is not in flight")
        self._acked += delta + 1

    # -- sending -------------------------------------------------------------------------------

    def send_message(self, message: bytes) -> None:
        """Queue one message (1..65535 bytes) for sending."""
        self._check_usable()
        if not 0 < len(message) <= MAX_MESSAGE:
            raise _misuse(ErrorCode.oversize, f"message must be 1..{MAX_MESSAGE} bytes")
        self._queue.append(memoryview(bytes(message)))
        self._queued_bytes += len(message)

    def datagrams_to_send(self) -> list[bytes]:
        """Everything that may be sent now: control, data within the peer window, and due acks."""
        self._check_usable()
        out = self._control
        self._control = []
        if self.state is not FramerState.open:
            return out
        while self._queue and self.in_flight < self.peer_window:
            out.append(self._next_fragment())
        if self._ack_due and not self.hold_acks:
            out.append(bytes((FLAG_ACK, (self._expected_seq - 1) & 0xFF)))
            self._take_ack()
        return out

    def take_refusal(self) -> list[bytes]:
        """Datagrams a failed box still sends before closing (its version, to an older phone)."""
        out, self._refusal = self._refusal, []
        return out

    def flush_ack(self) -> bytes | None:
        """An ack-only datagram for fragments received but not yet acked (for an idle timer)."""
        self._check_usable()
        if self.state is not FramerState.open or self._unacked_received == 0:
            return None
        self._take_ack()
        return bytes((FLAG_ACK, (self._expected_seq - 1) & 0xFF))

    def _take_ack(self) -> None:
        self._ack_due = False
        self._unacked_received = 0

    def _next_fragment(self) -> bytes:
        message = self._queue[0]
        header = bytearray(1)
        flags = FLAG_DATA
        if self._unacked_received and not self.hold_acks:
            flags |= FLAG_ACK
            header.append((self._expected_seq - 1) & 0xFF)
            self._take_ack()
        header.append(self._next_seq & 0xFF)
        if self._offset == 0:
            flags |= FLAG_BEGIN
            header += _U16.pack(len(message))
        room = self.mtu - len(header)
        chunk = message[self._offset : self._offset + room]
        self._offset += len(chunk)
        self._queued_bytes -= len(chunk)
        if self._offset == len(message):
            flags |= FLAG_END
            self._queue.popleft()
            self._offset = 0
        header[0] = flags
        self._next_seq += 1
        header += chunk
        return bytes(header)
