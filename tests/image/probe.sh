#!/bin/sh
# Runs INSIDE the booted image under qemu (tests/image/test_boot.py), started by the kernel command
# line (systemd.run=, systemd-run-generator); not part of the image. It waits for the box service,
# records the guest's state as key=value lines in /mnt/result-$BOOT.txt on the probe disk, runs
# the optional BLE part, and the generator powers the guest off when it exits.
set -u
BOOT=$1
OUT=/mnt/result-$BOOT.txt
VENV=/opt/edgebox/.venv
say() { echo "$1=$2" >>"$OUT"; }
: >"$OUT"
exec 2>>/mnt/probe-$BOOT.err

# Wait (up to 10 min of emulated time) until the box daemon is active (Type=notify: READY=1 seen)
# and no other start job is running. Jobs that are only *waiting* are not counted: units ordered
# after the targets wait for this probe itself (kernel-command-line.service), so they never start
# while it runs.
i=0
while [ $i -lt 600 ]; do
    state=$(systemctl show -P ActiveState edgebox-box.service)
    jobs=$(systemctl list-jobs --no-legend | awk '$2 != "kernel-command-line.service" && $4 == "running"' | grep -c .)
    [ "$state" = active ] && [ "$jobs" -eq 0 ] && break
    [ "$state" = failed ] && break
    sleep 1
    i=$((i + 1))
done
sleep 3
say running_jobs "$(systemctl list-jobs --no-legend | awk '{print $2 "/" $4}' | tr '\n' ',')"
say box_state "$(systemctl show -P ActiveState edgebox-box.service)"
say box_substate "$(systemctl show -P SubState edgebox-box.service)"
say box_type "$(systemctl show -P Type edgebox-box.service)"
say box_restarts "$(systemctl show -P NRestarts edgebox-box.service)"
say box_ready_us "$(systemctl show -P ActiveEnterTimestampMonotonic edgebox-box.service)"
say box_start_us "$(systemctl show -P ExecMainStartTimestampMonotonic edgebox-box.service)"
say box_user "$(stat -c %U "/proc/$(systemctl show -P MainPID edgebox-box.service)" 2>/dev/null)"
say firstboot_result "$(systemctl show -P Result edgebox-firstboot.service)"
say firstboot_ran "$(systemctl show -P ExecMainStartTimestampMonotonic edgebox-firstboot.service)"
say netpolicy_allow "$(systemctl show -P IPAddressAllow edgebox-box.service | tr ' ' ',')"
say failed_units "$(systemctl list-units --failed --no-legend --plain | awk '{print $1}' | tr '\n' ',')"
say system_state "$(systemctl is-system-running)"
say root_mount "$(findmnt -no OPTIONS / | cut -d, -f1)"
say data_mount "$(findmnt -no SOURCE /var/lib/edgebox)"
say machine_id "$(cat /etc/machine-id)"
# What the Pi firmware hands the kernel next boot (cmdline.txt): firstboot pins the machine-id there.
say cmdline_machine_id "$(grep -o 'systemd\.machine_id=[0-9a-f]*' /boot/firmware/cmdline.txt | cut -d= -f2)"
for f in /var/lib/edgebox/edgebox-db-key.cred /var/lib/edgebox/edgebox-identity.cred \
         /var/lib/systemd/credential.secret /var/lib/edgebox/box.toml; do
    name=$(basename "$f" | tr '.-' '__')
    if [ -e "$f" ]; then say "sha_$name" "$(sha256sum <"$f" | cut -c1-16)"; else say "sha_$name" missing; fi
done
say plaintext_keys "$(ls /var/lib/edgebox | grep -E '^(db\.key|identity\.json)$' | tr '\n' ',')"
# The identity credential decrypts to a P-256 PKCS#8 key; its public key hash is what phones pin.
say identity_key_hash "$(systemd-creds decrypt --name=edgebox-identity /var/lib/edgebox/edgebox-identity.cred - \
    | $VENV/bin/python -c '
import sys, hashlib
from cryptography.hazmat.primitives import serialization
k = serialization.load_der_private_key(sys.stdin.buffer.read(), None)
pt = k.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
print(k.curve.name + ":" + hashlib.sha256(pt).hexdigest())
')"
say db_key_len "$(systemd-creds decrypt --name=edgebox-db-key /var/lib/edgebox/edgebox-db-key.cred - | wc -c)"
say config_gateway "$(grep -E '^url = ' /var/lib/edgebox/box.toml | head -1)"
# The admin page over HTTPS, inside the guest (socket unit on 443).
say admin_socket "$(systemctl show -P ActiveState edgebox-admin.socket)"
say admin_https "$($VENV/bin/python - <<'PY' 2>&1 | tail -1
import ssl, http.client
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
try:
    c = http.client.HTTPSConnection("127.0.0.1", 443, context=ctx, timeout=60)
    c.request("GET", "/")
    r = c.getresponse()
    print(f"{r.status}:{c.sock.version()}")
except Exception as e:
    print("error:" + type(e).__name__)
PY
)"
if [ -x /mnt/phone.sh ]; then /mnt/phone.sh "$BOOT" "$OUT"; fi
if [ -x /mnt/ble.sh ]; then /mnt/ble.sh "$BOOT" "$OUT"; fi
journalctl -b -o short-monotonic --no-pager >/mnt/journal-$BOOT.txt 2>&1
say done yes
sync
umount /mnt 2>/dev/null || true
