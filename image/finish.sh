#!/bin/bash
# image/build.py stage "image": finish the unpacked root file system on the host (no emulation
# needed: systemd-sysusers and systemctl work on a --root). Called as: finish.sh ROOT
set -euo pipefail
ROOT=$1
cd "$ROOT"

# Users (static, from /usr/lib/sysusers.d/edgebox.conf) and units.
systemd-sysusers --root="$ROOT" >/dev/null
systemctl --root="$ROOT" enable \
    edgebox-firstboot.service edgebox-netpolicy.service edgebox-box.service edgebox-admin.socket \
    systemd-networkd.service systemd-resolved.service systemd-timesyncd.service bluetooth.service \
    >/dev/null 2>&1
# Writers to a read-only root, and first-boot prompts, are switched off.
systemctl --root="$ROOT" mask \
    systemd-firstboot.service apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer \
    e2scrub_all.timer e2scrub_reap.service systemd-networkd-wait-online.service >/dev/null 2>&1
systemctl --root="$ROOT" set-default multi-user.target >/dev/null 2>&1

# The box config lives on the data partition (the admin page writes it); /etc points there.
mkdir -p etc/edgebox
ln -sfn /var/lib/edgebox/box.toml etc/edgebox/box.toml
ln -sfn ../run/systemd/resolve/stub-resolv.conf etc/resolv.conf

# Boot partition: the kernel command line (read-only root) and the installer's provisioning file.
fw=boot/firmware
[[ -f $fw/config.txt && -f $fw/cmdline.txt ]] || { echo "finish: raspi-firmware did not populate /boot/firmware" >&2; exit 1; }
echo "console=ttyS1,115200 console=tty0 root=LABEL=RASPIROOT ro rootfstype=ext4 fsck.repair=yes rootwait net.ifnames=0 cma=64M" >"$fw/cmdline.txt"
install -m 0644 usr/share/edgebox/edgebox.toml.example "$fw/edgebox.toml"
grep -q '^dtparam=krnbt=on' "$fw/config.txt" || printf '\n# edgebox: on-board Bluetooth through the kernel (hci_uart + btbcm)\ndtparam=krnbt=on\n' >>"$fw/config.txt"

# Everything systemd-tmpfiles would create on the root at boot exists now (the root is read-only
# then); the run-time trees (/run, /tmp, /var/tmp, /var/log are tmpfs) are left to the boot.
mkdir -p -m 0700 var/cache/private var/lib/private root/.ssh
systemd-tmpfiles --root="$ROOT" --create --boot \
    --exclude-prefix=/dev --exclude-prefix=/proc --exclude-prefix=/sys --exclude-prefix=/run \
    --exclude-prefix=/tmp --exclude-prefix=/var/tmp --exclude-prefix=/var/log >/dev/null 2>&1 || true

# Data partition skeleton: everything that changes at run time (genimage makes it p3 from /data).
mkdir -p data/edgebox data/systemd data/bluetooth
chmod 0700 data/edgebox data/bluetooth
cp -a var/lib/systemd/. data/systemd/
rm -rf var/lib/systemd/* var/lib/bluetooth/* var/lib/edgebox 2>/dev/null || true
mkdir -p var/lib/edgebox var/lib/bluetooth

# Generic image: nothing that identifies or secures one particular card.
: >etc/machine-id
rm -f var/lib/dbus/machine-id && ln -s /etc/machine-id var/lib/dbus/machine-id
rm -f data/systemd/random-seed data/systemd/credential.secret var/lib/systemd/random-seed
rm -f etc/ssh/ssh_host_* root/.bash_history
rm -f boot/*.dpkg-bak boot/firmware/*.dpkg-bak
rm -rf var/lib/apt/lists/* var/cache/apt/*.bin var/log/journal/* tmp/* var/tmp/*
find var/log -type f -delete
