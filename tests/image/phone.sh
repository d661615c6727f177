#!/bin/sh
# Runs INSIDE the booted image (called by probe.sh): the operator console and a paired phone that
# survive a reboot, without Bluetooth (the image's arm64 kernel has no virtual controller, see
# ble.sh). Boot 1 adds a test-only Unix socket for phones to the card's box.toml ([dev] socket:
# a development transport the shipped config never has), pairs the image's own reference phone
# through it from a code made with `edgebox box invite` on the console, adds a branch document with
# `edgebox box docs add` (no gateway is reachable here, so the box answers from its documents), and
# asks; boot 2 lists the phones and asks again with the key store saved by boot 1 on the probe disk:
# the phone, its pairing and the document all live in the card's encrypted store.
set -u
BOOT=$1
OUT=$2
EB=edgebox  # the image puts /usr/local/bin/edgebox on PATH (the console commands an operator types)
SOCK=/var/lib/edgebox/test-phone.sock
KS=/mnt/phone-socket-keystore.json
conf=/var/lib/edgebox/box.toml
say() { echo "$1=$2" >>"$OUT"; }
wait_active() {
    i=0
    while [ $i -lt 600 ] && [ "$(systemctl show -P ActiveState edgebox-box.service)" != active ]; do
        sleep 1
        i=$((i + 1))
    done
}

say console_path "$(command -v $EB)"
$EB box status >/mnt/console-status-$BOOT.json 2>>/mnt/phone-$BOOT.err
say console_status_rc $?
if [ "$BOOT" = 1 ]; then
    if ! grep -q '^\[dev\]' "$conf"; then
        printf '\n[dev]\nsocket = "%s"\n' "$SOCK" >>"$conf"
    fi
    systemctl restart edgebox-box.service
    wait_active
    code=$($EB box invite --no-qr 2>>/mnt/phone-$BOOT.err | grep -o 'EDGEBOX1:[^ ]*' | head -1)
    say socket_invite "$( [ -n "$code" ] && echo yes || echo no)"
    EDGEBOX_PHONE_KEYSTORE=$KS timeout 600 $EB phone --socket "$SOCK" --timeout 300 pair "$code" \
        >/mnt/phone-pair-$BOOT.txt 2>>/mnt/phone-$BOOT.err
    say socket_pair_rc $?
    printf '# Opening hours\n\nThe branch is open on Saturday from 9:00 to 12:00, and closed on Sunday.\n' \
        >/run/opening-hours.md
    $EB box docs add /run/opening-hours.md >/mnt/docs-add-$BOOT.txt 2>>/mnt/phone-$BOOT.err
    say docs_add_rc $?
fi
i=0
while [ $i -lt 120 ] && [ ! -S "$SOCK" ]; do sleep 1; i=$((i + 1)); done
say socket_phones "$($EB box phones 2>>/mnt/phone-$BOOT.err | awk '{print $1 ":" $2}' | tr '\n' ',')"
EDGEBOX_PHONE_KEYSTORE=$KS timeout 900 $EB phone --socket "$SOCK" --timeout 300 ask "When is the branch open on Saturday?" \
    >/mnt/phone-ask-$BOOT.txt 2>>/mnt/phone-$BOOT.err
say socket_ask_rc $?
say socket_answer_bytes "$(wc -c </mnt/phone-ask-$BOOT.txt)"
say socket_answer_local "$(grep -c 'Saturday from 9:00 to 12:00' /mnt/phone-ask-$BOOT.txt)"
