"""Transports: how framed datagrams move between a phone and the box.

Theory of operation: the secure session (edgebox.session) is sans-I/O; it turns bytes into events and
events into bytes. A transport only moves *datagrams* of at most `mtu` bytes, in order, between two
ends of one link, with back-pressure on send. Everything above (framing, session, application) is the
same whatever the transport: the in-process loopback (tests, demo) and BLE GATT (edgebox.ble, BlueZ
over D-Bus on the box, bleak on the phone) are interchangeable backends behind these two protocols,
the way bleak hides its platform backends. Nothing above this seam imports dbus-fast or bleak.
"""

from edgebox.transport.base import DatagramLink, LinkClosed, LinkListener

__all__ = ["DatagramLink", "LinkClosed", "LinkListener"]
