"""The box side of the BLE transport: a GATT peripheral on BlueZ that is a `LinkListener`.

Theory of operation.

Objects. The peripheral exports, on its own system-bus connection, one GATT application
(`<root>/svc` with RX, TX and INFO characteristics, layout in edgebox.ble.layout) and N LE
advertisements (`<root>/adv<i>`: service UUID + box name). It answers BlueZ's method calls with a
raw dbus-fast message handler (no ServiceInterface magic: every reply, error and file descriptor is
explicit, and a write can be answered after back-pressure).

Connections. A phone's connection is keyed by the D-Bus device path BlueZ passes in the options of
every ReadValue/WriteValue/AcquireNotify. An INFO read at offset 0 opens a link: a random link tag, a
datagram size from the ATT MTU in the options, and a `BleLink`, which is handed to `accept()` (an RX
write from a device without a link opens one too). Phones read INFO once per connection, so an INFO
read from a device that still has a link ends the old link first: BlueZ 5.66 can miss the
Device1.Connected transitions of a connection entirely when the ATT socket wins the race against
the mgmt event (shared notes item 3), and this keeps reconnects correct regardless.
Device1.Connected -> False, the device object vanishing, or bluetoothd going away also end the
link: queued datagrams are still delivered, then `recv` raises LinkClosed.

TX path and flow control. `BleLink.send` writes TAG+datagram to the AcquireNotify socket of that
phone (BlueZ >= 5.70 acquires one per device, so nothing is broadcast), else to any live
AcquireNotify socket (BlueZ 5.66: one socket per characteristic, broadcast to every subscribed phone,
which drop foreign tags), else emits PropertiesChanged(Value) (also a broadcast). The AcquireNotify
socket is a SOCK_SEQPACKET pair whose queue is small, so `sock_sendall` waits when bluetoothd is
behind: real back-pressure, nothing dropped. On the PropertiesChanged path every FLUSH_EVERY signals
the sender waits for a Peer.Ping round trip to bluetoothd, which bounds the bytes queued in our bus
socket (dbus-fast 5.2 tears the bus down on BlockingIOError from a full socket, notes item 6).
End-to-end pacing between box and phone is the session framing's window, above this layer.

RX path. Each write is one datagram, queued for `recv`. A phone that fills its queue
(rx_queue_depth datagrams, far more than any window allows) is misbehaving: its link is closed and
the device disconnected, other phones are unaffected. Writes with an offset (long/prepared writes)
or of zero length are refused with a GATT error.

Lifecycle and state. `state` is one of ListenerState; `start()` never raises for a missing adapter
or bluetoothd: the state says so and the peripheral (re)registers when they appear (NameOwnerChanged
for org.bluez, InterfacesAdded, Powered). A graceful stop is two steps: `stop_accepting()`
unregisters the advertisements and refuses new links (an INFO read or RX write from a device without
a link gets a GATT error) while the GATT application and the links already accepted stay, so the
answers in flight finish; `close()` then ends every link, disconnects the phones and unregisters.
Advertisements are re-registered after every disconnect
(BlueZ/controllers may stop advertising after a connection, bluez#644, #1015) and whenever BlueZ
releases them.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dbus_fast import BusType, Message, MessageFlag, MessageType, Variant
from dbus_fast.aio import MessageBus

from edgebox.ble import bluez
from edgebox.ble.layout import (
    INFO_UUID,
    RX_UUID,
    SERVICE_UUID,
    TAG_LEN,
    TX_UUID,
    BleError,
    BoxInfo,
    datagram_size,
    encode_info,
)
from edgebox.log import get_logger
from edgebox.transport.base import DatagramLink, LinkClosed

log = get_logger("edgebox.ble.peripheral")

FLUSH_EVERY = 8
_CLOSED = object()


class ListenerState(enum.Enum):
    STARTING = "starting"
    BLUEZ_MISSING = "bluez_missing"  # bluetoothd not on the system bus
    ADAPTER_MISSING = "adapter_missing"  # no such adapter
    ADAPTER_OFF = "adapter_off"  # adapter present but not powered (rfkill, power off)
    REGISTERING = "registering"
    ADVERTISING = "advertising"  # GATT app and advertisements registered
    STOPPING = "stopping"  # stop_accepting(): no advertisements, no new links; links go on
    FAILED = "failed"  # BlueZ refused our registration (see `last_error`)
    CLOSED = "closed"


@dataclass(frozen=True)
class PeripheralConfig:
    box: BoxInfo
    adapter: str = "hci0"
    name: str = "edgebox"
    # Two instances with Duration=1 make the kernel rotate them every second; needed under btvirt
    # (it only reports advertisements at the edge of enabling them), harmless elsewhere.
    advertisement_instances: int = 1
    use_acquire_notify: bool = True
    rx_queue_depth: int = 256
    power_on: bool = True
    root: str = "/org/edgebox/ble"


class LinkOverrun(LinkClosed):
    code = "ble_link_overrun"


class BleLink:
    """One phone's link (box side). Implements edgebox.transport.base.DatagramLink."""

    def __init__(self, peripheral: BlePeripheral, conn: _Conn) -> None:
        self._peripheral = peripheral
        self._conn = conn
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._closed_reason: str | None = None
        self._local_closed = False
        self._ended = asyncio.Event()

    @property
    def mtu(self) -> int:
        return self._conn.mtu

    @property
    def peer(self) -> str:
        return self._conn.device

    @property
    def closed(self) -> bool:
        return self._closed_reason is not None

    async def send(self, datagram: bytes) -> None:
        if self._closed_reason is not None:
            raise LinkClosed(f"BLE link closed ({self._closed_reason})")
        if len(datagram) > self._conn.mtu:
            raise ValueError(f"datagram of {len(datagram)} bytes exceeds link MTU {self._conn.mtu}")
        await self._peripheral._notify(self, self._conn.tag + bytes(datagram))

    async def recv(self) -> bytes:
        if self._local_closed:
            raise LinkClosed("BLE link closed locally")
        item = await self._queue.get()
        if item is _CLOSED:
            self._queue.put_nowait(_CLOSED)  # later recv calls raise too
            if self._closed_reason == "overrun":
                raise LinkOverrun("phone overran its receive queue; link closed")
            raise LinkClosed(f"BLE link closed ({self._closed_reason})")
        assert isinstance(item, bytes)
        return item

    async def close(self) -> None:
        if self._closed_reason is None:
            self._local_closed = True
            self._peripheral._end_conn(self._conn.device, "closed locally", disconnect=True)

    # called by the peripheral
    def _deliver(self, datagram: bytes) -> bool:
        if self._queue.qsize() >= self._peripheral.config.rx_queue_depth:
            return False
        self._queue.put_nowait(datagram)
        return True

    def _end(self, reason: str) -> None:
        if self._closed_reason is None:
            self._closed_reason = reason
            self._queue.put_nowait(_CLOSED)
            self._ended.set()


@dataclass
class _Conn:
    device: str
    tag: bytes
    mtu: int
    link: BleLink | None = None


@dataclass
class _NotifySocket:
    device: str
    sock: socket.socket
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class BlePeripheral:
    """The box's BLE `LinkListener`. Use `async with BlePeripheral(config) as p: link = await p.accept()`."""

    def __init__(self, config: PeripheralConfig, *, on_state: Callable[[ListenerState], None] | None = None):
        self.config = config
        self._on_state = on_state
        self._state = ListenerState.STARTING
        self._state_changed = asyncio.Condition()
        self.last_error: str | None = None
        self._bus: MessageBus | None = None
        self._bluez_owner: str | None = None
        self._conns: dict[str, _Conn] = {}
        self._accept_q: asyncio.Queue[BleLink | None] = asyncio.Queue()
        self._accepting = True
        self._notify_socks: dict[str, _NotifySocket] = {}
        self._notifying = False  # StartNotify received (PropertiesChanged path)
        self._notify_ready = asyncio.Event()
        self._signal_lock = asyncio.Lock()
        self._signals_since_flush = 0
        self._reconcile_lock = asyncio.Lock()
        self._app_registered = False
        self._adverts_registered: set[int] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False
        self.stats = {"notify_fd": 0, "notify_signal": 0, "rx": 0, "rx_rejected": 0, "overruns": 0}
        root = config.root.rstrip("/")
        self._app_path = root
        self._svc_path = f"{root}/svc"
        self._rx_path = f"{root}/svc/rx"
        self._tx_path = f"{root}/svc/tx"
        self._info_path = f"{root}/svc/info"
        self._adapter_path = f"/org/bluez/{config.adapter}"

    # ----------------------------------------------------------------- public API
    @property
    def state(self) -> ListenerState:
        return self._state

    @property
    def stopped_accepting(self) -> bool:
        return not self._accepting

    @property
    def connections(self) -> list[str]:
        return sorted(self._conns)

    async def start(self) -> None:
        bus = MessageBus(bus_type=BusType.SYSTEM, negotiate_unix_fd=True)
        await bus.connect()
        self._bus = bus
        bus.add_message_handler(self._on_message)
        for rule in (
            "type='signal',sender='org.freedesktop.DBus',member='NameOwnerChanged',arg0='org.bluez'",
            f"type='signal',sender='org.bluez',interface='{bluez.PROPS_IFACE}',member='PropertiesChanged',"
            f"path_namespace='{self._adapter_path}'",
            f"type='signal',sender='org.bluez',interface='{bluez.OM_IFACE}'",
        ):
            await bluez.add_match(bus, rule)
        if await bluez.name_has_owner(bus, bluez.BLUEZ):
            self._bluez_owner = "present"
            await self._reconcile()
        else:
            await self._set_state(ListenerState.BLUEZ_MISSING)

    async def accept(self) -> DatagramLink:
        if self._closed or not self._accepting:
            raise LinkClosed("BLE listener is not accepting links")
        link = await self._accept_q.get()
        if link is None:
            self._accept_q.put_nowait(None)  # wake every other waiter too
            raise LinkClosed("BLE listener is not accepting links")
        if self._closed:
            raise LinkClosed("BLE listener is closed")
        return link

    async def stop_accepting(self) -> None:
        """Stop advertising and take no new links; the links already accepted go on."""
        if not self._accepting:
            return
        self._accepting = False
        while not self._accept_q.empty():  # opened but never accepted: ended, phone disconnected
            link = self._accept_q.get_nowait()
            if link is not None:
                self._end_conn(link.peer, "listener stopped accepting", disconnect=True)
        self._accept_q.put_nowait(None)
        bus = self._bus
        if bus is not None and bus.connected:
            async with self._reconcile_lock:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._unregister_adverts(), 5)
        if not self._closed:
            await self._set_state(ListenerState.STOPPING)

    async def wait_state(self, *states: ListenerState, timeout: float | None = None) -> ListenerState:
        async def wait() -> ListenerState:
            async with self._state_changed:
                await self._state_changed.wait_for(lambda: self._state in states)
                return self._state

        return await asyncio.wait_for(wait(), timeout)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._accepting = False
        self._accept_q.put_nowait(None)
        devices = list(self._conns)
        for device in devices:
            self._end_conn(device, "listener closed", disconnect=False)
        bus = self._bus
        if bus is not None and bus.connected:
            # Phones must not stay connected to a box that no longer serves them.
            for device in devices:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._disconnect_device(device), 5)
            with contextlib.suppress(Exception):
                await self._unregister_all()
        for ns in list(self._notify_socks.values()):
            self._drop_notify_socket(ns)
        for task in list(self._tasks):
            task.cancel()
        if bus is not None:
            bus.disconnect()
        await self._set_state(ListenerState.CLOSED)

    async def __aenter__(self) -> BlePeripheral:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ----------------------------------------------------------------- state & registration
    async def _set_state(self, state: ListenerState, error: str | None = None) -> None:
        if error is not None:
            self.last_error = error
        if state is not self._state:
            log.info("ble_state", state=state.value, adapter=self.config.adapter, error=error)
            self._state = state
            if self._on_state is not None:
                self._on_state(state)
        async with self._state_changed:
            self._state_changed.notify_all()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("ble_task_failed", error=repr(task.exception()))

    async def _reconcile(self, readvertise: bool = False) -> None:
        """Bring registration in line with BlueZ's current state. Serialized; safe to call any time.
        Once not accepting (stop_accepting), nothing is registered again."""
        if self._closed or not self._accepting or self._bus is None:
            return
        async with self._reconcile_lock:
            if self.stopped_accepting:  # stop_accepting() ran while we waited for the lock
                return
            bus = self._bus
            try:
                objects = await bluez.get_managed_objects(bus)
            except bluez.BluezCallError as exc:
                await self._set_state(ListenerState.BLUEZ_MISSING, str(exc))
                return
            adapter = objects.get(self._adapter_path, {}).get(bluez.ADAPTER_IFACE)
            if adapter is None:
                self._app_registered = False
                self._adverts_registered.clear()
                await self._set_state(ListenerState.ADAPTER_MISSING)
                return
            if not adapter.get("Powered"):
                if self.config.power_on:
                    with contextlib.suppress(bluez.BluezCallError):
                        await bluez.call(
                            bus,
                            path=self._adapter_path,
                            interface=bluez.PROPS_IFACE,
                            member="Set",
                            signature="ssv",
                            body=[bluez.ADAPTER_IFACE, "Powered", Variant("b", True)],
                        )
                # the Powered change signal brings us back here
                await self._set_state(ListenerState.ADAPTER_OFF)
                return
            if self._state is not ListenerState.ADVERTISING:
                await self._set_state(ListenerState.REGISTERING)
            try:
                if not self._app_registered:
                    await self._register("RegisterApplication", bluez.GATT_MANAGER_IFACE, self._app_path)
                    self._app_registered = True
                if readvertise:
                    await self._unregister_adverts()
                for i in range(self.config.advertisement_instances):
                    if i not in self._adverts_registered:
                        await self._register(
                            "RegisterAdvertisement", bluez.ADV_MANAGER_IFACE, f"{self._app_path}/adv{i}"
                        )
                        self._adverts_registered.add(i)
            except bluez.BluezCallError as exc:
                log.error("ble_register_failed", error=str(exc))
                await self._set_state(ListenerState.FAILED, str(exc))
                return
            await self._set_state(ListenerState.ADVERTISING)

    async def _register(self, member: str, interface: str, path: str) -> None:
        """Register one object; "already registered" (our bookkeeping was reset, BlueZ's was not) is fine."""
        assert self._bus is not None
        try:
            await bluez.call(
                self._bus,
                path=self._adapter_path,
                interface=interface,
                member=member,
                signature="oa{sv}",
                body=[path, {}],
            )
        except bluez.BluezCallError as exc:
            if exc.dbus_error != "org.bluez.Error.AlreadyExists":
                raise

    async def _unregister_adverts(self) -> None:
        assert self._bus is not None
        for i in sorted(self._adverts_registered):
            with contextlib.suppress(bluez.BluezCallError):
                await bluez.call(
                    self._bus,
                    path=self._adapter_path,
                    interface=bluez.ADV_MANAGER_IFACE,
                    member="UnregisterAdvertisement",
                    signature="o",
                    body=[f"{self._app_path}/adv{i}"],
                )
        self._adverts_registered.clear()

    async def _unregister_all(self) -> None:
        assert self._bus is not None
        await self._unregister_adverts()
        if self._app_registered:
            with contextlib.suppress(bluez.BluezCallError):
                await bluez.call(
                    self._bus,
                    path=self._adapter_path,
                    interface=bluez.GATT_MANAGER_IFACE,
                    member="UnregisterApplication",
                    signature="o",
                    body=[self._app_path],
                )
            self._app_registered = False

    def _bluez_gone(self) -> None:
        self._app_registered = False
        self._adverts_registered.clear()
        self._notifying = False
        for ns in list(self._notify_socks.values()):
            self._drop_notify_socket(ns)
        for device in list(self._conns):
            self._end_conn(device, "bluetoothd went away", disconnect=False)
        self._spawn(self._set_state(ListenerState.BLUEZ_MISSING))

    # ----------------------------------------------------------------- connections
    def _conn_for(self, device: str, att_mtu: int) -> _Conn | None:
        """The device's link, opened (and queued for accept) if it has none; None when the
        listener takes no new links."""
        conn = self._conns.get(device)
        if conn is None:
            if not self._accepting:
                return None
            conn = _Conn(device=device, tag=os.urandom(TAG_LEN), mtu=datagram_size(att_mtu))
            conn.link = BleLink(self, conn)
            self._conns[device] = conn
            log.info("ble_link_open", peer=device, mtu=conn.mtu)
            self._accept_q.put_nowait(conn.link)
        return conn

    def _end_conn(self, device: str, reason: str, *, disconnect: bool) -> None:
        conn = self._conns.pop(device, None)
        if conn is None:
            return
        log.info("ble_link_closed", peer=device, reason=reason)
        if conn.link is not None:
            conn.link._end(reason)
        if disconnect and self._bus is not None and self._bus.connected:
            self._spawn(self._disconnect_device(device))
        if not self._closed:
            self._spawn(self._reconcile(readvertise=True))

    async def _disconnect_device(self, device: str) -> None:
        assert self._bus is not None
        with contextlib.suppress(bluez.BluezCallError):
            await bluez.call(self._bus, path=device, interface=bluez.DEVICE_IFACE, member="Disconnect")

    # ----------------------------------------------------------------- notifications (TX)
    async def _notify(self, link: BleLink, value: bytes) -> None:
        while True:
            if link.closed:
                raise LinkClosed(f"BLE link closed ({link._closed_reason})")
            ns = self._notify_socks.get(link.peer) or next(iter(self._notify_socks.values()), None)
            if ns is not None:
                try:
                    async with ns.lock:
                        await asyncio.get_running_loop().sock_sendall(ns.sock, value)
                    self.stats["notify_fd"] += 1
                    return
                except OSError:
                    self._drop_notify_socket(ns)
                    continue
            if self._notifying and self._bus is not None:
                await self._notify_signal(value)
                return
            # Nobody subscribed yet (or the subscription was just lost): wait for one or for link end.
            self._notify_ready.clear()
            waiter = asyncio.ensure_future(self._notify_ready.wait())
            closer = asyncio.ensure_future(link._ended.wait())
            try:
                await asyncio.wait({waiter, closer}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
                closer.cancel()

    async def _notify_signal(self, value: bytes) -> None:
        bus = self._bus
        assert bus is not None
        async with self._signal_lock:
            await bus.send(
                Message.new_signal(
                    self._tx_path,
                    bluez.PROPS_IFACE,
                    "PropertiesChanged",
                    "sa{sv}as",
                    [bluez.GATT_CHRC_IFACE, {"Value": Variant("ay", value)}, []],
                )
            )
            self.stats["notify_signal"] += 1
            self._signals_since_flush += 1
            if self._signals_since_flush >= FLUSH_EVERY:
                self._signals_since_flush = 0
                # Peer.Ping is answered by bluetoothd's libdbus after it read everything we sent before.
                await bluez.call(bus, path="/", interface="org.freedesktop.DBus.Peer", member="Ping")

    def _add_notify_socket(self, device: str, sock: socket.socket) -> None:
        old = self._notify_socks.get(device)
        if old is not None:
            self._drop_notify_socket(old)
        ns = _NotifySocket(device, sock)
        self._notify_socks[device] = ns
        loop = asyncio.get_running_loop()
        loop.add_reader(sock.fileno(), self._on_notify_socket_event, ns)
        self._notify_ready.set()

    def _on_notify_socket_event(self, ns: _NotifySocket) -> None:
        try:
            data = ns.sock.recv(1)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # bluetoothd closed its end: no more subscribers through this socket
            self._drop_notify_socket(ns)

    def _drop_notify_socket(self, ns: _NotifySocket) -> None:
        if self._notify_socks.get(ns.device) is ns:
            del self._notify_socks[ns.device]
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(ns.sock.fileno())
        ns.sock.close()

    # ----------------------------------------------------------------- D-Bus dispatch
    def _on_message(self, msg: Message) -> bool | Message | None:
        if msg.message_type == MessageType.SIGNAL:
            self._on_signal(msg)
            return None
        if msg.message_type != MessageType.METHOD_CALL or not (msg.path or "").startswith(self._app_path):
            return None
        try:
            return self._on_call(msg)
        except _GattError as exc:
            return Message.new_error(msg, exc.name, exc.text)

    def _on_signal(self, msg: Message) -> None:
        if msg.member == "NameOwnerChanged" and msg.body and msg.body[0] == bluez.BLUEZ:
            new_owner = msg.body[2]
            if new_owner:
                log.info("ble_bluez_appeared")
                self._bluez_owner = new_owner
                self._app_registered = False
                self._adverts_registered.clear()
                self._spawn(self._reconcile())
            else:
                log.warning("ble_bluez_vanished")
                self._bluez_owner = None
                self._bluez_gone()
            return
        path = msg.path or ""
        if msg.member == "PropertiesChanged" and msg.interface == bluez.PROPS_IFACE and len(msg.body) >= 2:
            iface, changed = msg.body[0], msg.body[1]
            lost = "Connected" in changed and not bluez.unwrap(changed["Connected"])
            if iface == bluez.DEVICE_IFACE and lost:
                self._end_conn(path, "phone disconnected", disconnect=False)
            elif iface == bluez.ADAPTER_IFACE and path == self._adapter_path and "Powered" in changed:
                if bluez.unwrap(changed["Powered"]):
                    self._spawn(self._reconcile())
                else:
                    self._adverts_registered.clear()
                    for device in list(self._conns):
                        self._end_conn(device, "adapter powered off", disconnect=False)
                    self._spawn(self._set_state(ListenerState.ADAPTER_OFF))
        elif msg.member == "InterfacesRemoved" and msg.body:
            obj_path, ifaces = msg.body[0], msg.body[1]
            if bluez.DEVICE_IFACE in ifaces:
                self._end_conn(obj_path, "device removed", disconnect=False)
            if obj_path == self._adapter_path and bluez.ADAPTER_IFACE in ifaces:
                self._app_registered = False
                self._adverts_registered.clear()
                for device in list(self._conns):
                    self._end_conn(device, "adapter removed", disconnect=False)
                self._spawn(self._set_state(ListenerState.ADAPTER_MISSING))
        elif msg.member == "InterfacesAdded" and msg.body and msg.body[0] == self._adapter_path:
            self._spawn(self._reconcile())

    def _on_call(self, msg: Message) -> bool | Message | None:
        path, iface, member = msg.path, msg.interface, msg.member
        if iface == bluez.OM_IFACE and member == "GetManagedObjects" and path == self._app_path:
            return Message.new_method_return(msg, "a{oa{sa{sv}}}", [self._managed_objects()])
        if iface == bluez.PROPS_IFACE:
            props = self._managed_objects().get(path or "", {})
            if member == "GetAll" and msg.body and msg.body[0] in props:
                return Message.new_method_return(msg, "a{sv}", [props[msg.body[0]]])
            if member == "Get" and len(msg.body) == 2 and msg.body[1] in props.get(msg.body[0], {}):
                return Message.new_method_return(msg, "v", [props[msg.body[0]][msg.body[1]]])
            raise _GattError("org.freedesktop.DBus.Error.InvalidArgs", "no such property")
        if iface == bluez.ADV_IFACE and member == "Release":
            index = int((path or "").rsplit("adv", 1)[-1] or "0")
            self._adverts_registered.discard(index)
            log.info("ble_advertisement_released", index=index)
            self._spawn(self._reconcile())
            return Message.new_method_return(msg)
        if iface != bluez.GATT_CHRC_IFACE:
            return None
        options: dict[str, Any] = msg.body[-1] if msg.body and isinstance(msg.body[-1], dict) else {}
        device = bluez.option(options, "device", "")
        att_mtu = int(bluez.option(options, "mtu", 23))
        if path == self._info_path and member == "ReadValue":
            if not device:
                raise _GattError("org.bluez.Error.NotPermitted", "no device")
            offset = int(bluez.option(options, "offset", 0))
            if offset == 0 and device in self._conns:
                # A phone reads INFO once per connection, so this is a new connection from a device
                # whose disconnect we never saw (BlueZ 5.66 may not signal Connected for it at all).
                self._end_conn(device, "superseded by a new connection", disconnect=False)
            conn = self._conn_for(device, att_mtu)
            if conn is None:
                raise _GattError("org.bluez.Error.NotPermitted", "the box is not accepting connections")
            value = encode_info(self.config.box, conn.tag, conn.mtu)
            if offset > len(value):
                raise _GattError("org.bluez.Error.InvalidOffset", "offset")
            return Message.new_method_return(msg, "ay", [value[offset:]])
        if path == self._rx_path and member == "WriteValue":
            return self._on_rx_write(msg, device, att_mtu, options)
        if path == self._tx_path and member == "AcquireNotify":
            return self._on_acquire_notify(msg, device, att_mtu)
        if path == self._tx_path and member == "StartNotify":
            self._notifying = True
            self._notify_ready.set()
            return Message.new_method_return(msg)
        if path == self._tx_path and member == "StopNotify":
            self._notifying = False
            return Message.new_method_return(msg)
        raise _GattError("org.bluez.Error.NotSupported", "operation not supported")

    def _on_rx_write(
        self, msg: Message, device: str, att_mtu: int, options: dict[str, Any]
    ) -> bool | Message:
        no_reply = bool(msg.flags & MessageFlag.NO_REPLY_EXPECTED)
        value = msg.body[0] if msg.body else b""
        error: _GattError | None = None
        if not device:
            error = _GattError("org.bluez.Error.NotPermitted", "no device")
        elif int(bluez.option(options, "offset", 0)) != 0:
            error = _GattError("org.bluez.Error.InvalidOffset", "long writes are not supported")
        elif not value or len(value) > 512:
            error = _GattError("org.bluez.Error.InvalidValueLength", "empty or oversized datagram")
        if error is not None:
            self.stats["rx_rejected"] += 1
            return True if no_reply else Message.new_error(msg, error.name, error.text)
        conn = self._conn_for(device, att_mtu)
        if conn is None:
            self.stats["rx_rejected"] += 1
            error = _GattError("org.bluez.Error.NotPermitted", "the box is not accepting connections")
            return True if no_reply else Message.new_error(msg, error.name, error.text)
        assert conn.link is not None
        if not conn.link._deliver(bytes(value)):
            self.stats["overruns"] += 1
            log.warning("ble_link_overrun", peer=device)
            conn.link._end("overrun")
            self._end_conn(device, "overrun", disconnect=True)
            error = _GattError("org.bluez.Error.Failed", "receive queue overrun")
            return True if no_reply else Message.new_error(msg, error.name, error.text)
        self.stats["rx"] += 1
        return True if no_reply else Message.new_method_return(msg)

    def _on_acquire_notify(self, msg: Message, device: str, att_mtu: int) -> bool:
        if not device:
            raise _GattError("org.bluez.Error.NotPermitted", "no device")
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setblocking(False)
        self._add_notify_socket(device, ours)
        reply = Message.new_method_return(msg, "hq", [0, att_mtu], unix_fds=[theirs.fileno()])
        log.info("ble_notify_acquired", peer=device, mtu=att_mtu)

        async def send_and_close() -> None:
            assert self._bus is not None
            try:
                await self._bus.send(reply)
            finally:
                theirs.close()

        self._spawn(send_and_close())
        return True

    def _managed_objects(self) -> dict[str, dict[str, dict[str, Variant]]]:
        chrc = bluez.GATT_CHRC_IFACE
        tx: dict[str, Variant] = {
            "UUID": Variant("s", TX_UUID),
            "Service": Variant("o", self._svc_path),
            "Flags": Variant("as", ["notify"]),
        }
        if self.config.use_acquire_notify:
            tx["NotifyAcquired"] = Variant("b", bool(self._notify_socks))
        objects: dict[str, dict[str, dict[str, Variant]]] = {
            self._svc_path: {
                bluez.GATT_SERVICE_IFACE: {"UUID": Variant("s", SERVICE_UUID), "Primary": Variant("b", True)}
            },
            self._rx_path: {
                chrc: {
                    "UUID": Variant("s", RX_UUID),
                    "Service": Variant("o", self._svc_path),
                    "Flags": Variant("as", ["write", "write-without-response"]),
                }
            },
            self._tx_path: {chrc: tx},
            self._info_path: {
                chrc: {
                    "UUID": Variant("s", INFO_UUID),
                    "Service": Variant("o", self._svc_path),
                    "Flags": Variant("as", ["read"]),
                }
            },
        }
        for i in range(self.config.advertisement_instances):
            adv: dict[str, Variant] = {
                "Type": Variant("s", "peripheral"),
                "ServiceUUIDs": Variant("as", [SERVICE_UUID]),
                "LocalName": Variant("s", self.config.name),
                "Discoverable": Variant("b", True),
            }
            if self.config.advertisement_instances > 1:
                adv["Duration"] = Variant("q", 1)
            objects[f"{self._app_path}/adv{i}"] = {bluez.ADV_IFACE: adv}
        return objects


class _GattError(BleError):
    def __init__(self, name: str, text: str) -> None:
        super().__init__(text)
        self.name = name
        self.text = text
