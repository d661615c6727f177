"""The provisioning file on the boot partition -> the box config and the network policy."""

from __future__ import annotations

import tomllib

import pytest

from edgebox.provision.core import (
    Provisioning,
    ProvisioningError,
    check_ca_pem,
    dump_toml,
    ip_allow,
    merge_config,
    parse_provisioning,
)


def test_empty_file_means_defaults() -> None:
    assert parse_provisioning("# nothing set\n") == Provisioning()
    assert ip_allow(Provisioning()) == "localhost"


def test_full_file() -> None:
    prov = parse_provisioning(
        '[gateway]\nurl = "https://gw.example.net:8443/edge"\nca_file = "edgebox-ca.pem"\n'
        'prefixes = ["203.0.113.7/24", "2001:db8::/32"]\n'
        '[ble]\nname = "edgebox-branch-12"\n[admin]\nport = 443\n'
    )
    assert prov.gateway_url == "https://gw.example.net:8443/edge"
    assert prov.prefixes == ("203.0.113.0/24", "2001:db8::/32")
    assert ip_allow(prov) == "localhost 203.0.113.0/24 2001:db8::/32"
    assert ip_allow(Provisioning(gateway_url="https://gw", ca_file="c.pem")) == "any"


@pytest.mark.parametrize(
    "text, needle",
    [
        ('[gateway]\nurl = "http://secret-host.example"\nca_file = "a.pem"\n', "https://"),
        ('[gateway]\nurl = "https://gw.example"\n', "ca_file"),
        ('[gateway]\nurl = "https://user:pw@gw.example"\nca_file = "a.pem"\n', "host"),
        ('[gateway]\nurl = "https://gw.example:99999"\nca_file = "a.pem"\n', "port"),
        ('[gateway]\nca_file = "../../etc/shadow.pem"\n', "plain file name"),
        ('[gateway]\nprefixes = ["not-a-prefix"]\n', "prefix"),
        ('[gateway]\ntoken = "abc"\n', "unknown key"),
        ("[wifi]\npsk = 1\n", "unknown section"),
        ('[ble]\nname = "x\\u0000y"\n', "[ble] name"),
        ("[admin]\nport = true\n", "port"),
        ("not toml = = =\n", "not valid TOML"),
    ],
)
def test_invalid_files_are_typed_errors_that_do_not_echo_values(text: str, needle: str) -> None:
    with pytest.raises(ProvisioningError) as err:
        parse_provisioning(text)
    assert needle in str(err.value) and err.value.code == "provisioning_invalid"
    for secret in ("secret-host", "pw@", "shadow", "abc", "psk"):
        assert secret not in str(err.value)


def test_merge_and_dump_round_trip() -> None:
    template = {
        "box": {"state_dir": "x"},
        "ble": {"enabled": True, "adapter": "hci0"},
        "admin": {"port": 8443},
    }
    prov = Provisioning(gateway_url="https://gw.example", ca_file="ca.pem", ble_name='my "box"')
    doc = merge_config(template, prov, "/var/lib/edgebox")
    assert template["box"]["state_dir"] == "x"  # the template is not modified
    text = dump_toml(doc, "header line\n\nsecond")
    assert text.startswith("# header line\n#\n# second\n")
    assert tomllib.loads(text) == {
        "box": {"state_dir": "/var/lib/edgebox"},
        "ble": {"enabled": True, "adapter": "hci0", "name": 'my "box"'},
        "admin": {"port": 8443},
        "gateway": {"url": "https://gw.example", "ca_file": "/var/lib/edgebox/gateway-ca.pem"},
    }


def test_ca_file_must_be_a_pem_certificate() -> None:
    check_ca_pem(b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    with pytest.raises(ProvisioningError):
        check_ca_pem(b"-----BEGIN PRIVATE KEY-----\n")
    with pytest.raises(ProvisioningError):
        check_ca_pem(b"-----BEGIN CERTIFICATE-----" + b"A" * 70000)
