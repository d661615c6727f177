"""Small typed helpers over dbus-fast for talking to BlueZ (org.bluez on the system bus).

Only edgebox/ble imports dbus-fast; everything here is plain message plumbing: build a call, await
its reply, turn a D-Bus error reply into a typed `BluezCallError`.
"""

from __future__ import annotations

from typing import Any

from dbus_fast import Message, MessageType, Variant
from dbus_fast.aio import MessageBus

from edgebox.ble.layout import BleError

BLUEZ = "org.bluez"
ADAPTER_IFACE = "org.bluez.Adapter1"
DEVICE_IFACE = "org.bluez.Device1"
GATT_MANAGER_IFACE = "org.bluez.GattManager1"
GATT_SERVICE_IFACE = "org.bluez.GattService1"
GATT_CHRC_IFACE = "org.bluez.GattCharacteristic1"
ADV_MANAGER_IFACE = "org.bluez.LEAdvertisingManager1"
ADV_IFACE = "org.bluez.LEAdvertisement1"
PROPS_IFACE = "org.freedesktop.DBus.Properties"
OM_IFACE = "org.freedesktop.DBus.ObjectManager"
DBUS_NAME = "org.freedesktop.DBus"


class BluezCallError(BleError):
    """A D-Bus call to BlueZ returned an error (the D-Bus error name is kept in `dbus_error`)."""

    code = "ble_bluez_call_failed"

    def __init__(self, member: str, dbus_error: str, detail: str = "") -> None:
        super().__init__(f"{member} failed: {dbus_error} {detail}".strip())
        self.dbus_error = dbus_error


async def call(
    bus: MessageBus,
    *,
    path: str,
    interface: str,
    member: str,
    signature: str = "",
    body: list[Any] | None = None,
    destination: str = BLUEZ,
) -> list[Any]:
    reply = await bus.call(
        Message(
            destination=destination,
            path=path,
            interface=interface,
            member=member,
            signature=signature,
            body=body or [],
        )
    )
    assert reply is not None
    if reply.message_type == MessageType.ERROR:
        detail = str(reply.body[0]) if reply.body and isinstance(reply.body[0], str) else ""
        raise BluezCallError(member, reply.error_name or "unknown", detail[:200])
    return list(reply.body)


async def get_managed_objects(bus: MessageBus) -> dict[str, dict[str, dict[str, Any]]]:
    """org.bluez objects as {path: {interface: {property: plain value}}}."""
    (objects,) = await call(bus, path="/", interface=OM_IFACE, member="GetManagedObjects")
    return {
        path: {iface: {k: unwrap(v) for k, v in props.items()} for iface, props in ifaces.items()}
        for path, ifaces in objects.items()
    }


async def name_has_owner(bus: MessageBus, name: str) -> bool:
    (owned,) = await call(
        bus,
        destination=DBUS_NAME,
        path="/org/freedesktop/DBus",
        interface=DBUS_NAME,
        member="NameHasOwner",
        signature="s",
        body=[name],
    )
    return bool(owned)


async def add_match(bus: MessageBus, rule: str) -> None:
    await call(
        bus,
        destination=DBUS_NAME,
        path="/org/freedesktop/DBus",
        interface=DBUS_NAME,
        member="AddMatch",
        signature="s",
        body=[rule],
    )


def unwrap(value: Any) -> Any:
    return value.value if isinstance(value, Variant) else value


def option(options: dict[str, Any], key: str, default: Any = None) -> Any:
    return unwrap(options[key]) if key in options else default
