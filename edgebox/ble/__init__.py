"""BLE transport: the box's GATT peripheral on BlueZ (dbus-fast) and the phone's central (bleak).

Both ends are `edgebox.transport.base` DatagramLinks; nothing outside this package imports dbus-fast
or bleak. Layout and wire rules: edgebox.ble.layout and docs/ble.md.
"""
