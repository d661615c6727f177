"""Benchmarks that need more than the edgebox package (two Bluetooth adapters, the box and the phone
together); `edgebox bench ble` loads them from a checkout. See README.md."""
