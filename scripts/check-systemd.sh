#!/usr/bin/env bash
# Checks the systemd units in systemd/ with `systemd-analyze verify`: the unit and one instance of
# the template, in a scratch root that holds this host's system units and a stub of the guard at
# ExecStart's path (verify refuses a unit whose command does not exist). verify only prints most
# problems (an unknown key, a bad value) and still exits 0, so any line it prints about these units
# fails the check too.
#
#   scripts/check-systemd.sh [UNIT_DIR]     # default: the repository's systemd/
set -euo pipefail
unit_dir=$(realpath "${1:-$(dirname "$0")/../systemd}")

units=(vllm-guard.service vllm-guard@.service)
instances=(vllm-guard.service vllm-guard@llama.service)
guard_path=/usr/local/bin/vllm-guard  # ExecStart's program in both units

if ! command -v systemd-analyze >/dev/null; then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        echo "check-systemd: systemd-analyze is missing; installing it (apt-get install systemd)"
        # A fresh machine may have no package lists yet, and then install finds no systemd.
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd >/dev/null
    else
        # Never a skip: a check that cannot run is a failed check.
        echo "check-systemd: systemd-analyze not found; install systemd (apt-get install systemd)" >&2
        exit 2
    fi
    command -v systemd-analyze >/dev/null || { echo "check-systemd: installing systemd gave no systemd-analyze" >&2; exit 2; }
fi

system_units=""
for dir in /usr/lib/systemd/system /lib/systemd/system; do
    if [[ -d $dir ]]; then system_units=$dir; break; fi
done
if [[ -z $system_units ]]; then
    echo "check-systemd: no system unit directory (/usr/lib/systemd/system) to verify against" >&2
    exit 2
fi

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/usr/lib/systemd" "$root/etc/systemd/system" "$root$(dirname "$guard_path")"
# The host's units (sysinit.target, network-online.target, ...) with their absolute symlinks, which
# resolve inside the root: hence the merged-/usr link.
cp -a "$system_units" "$root/usr/lib/systemd/system"
ln -s usr/lib "$root/lib"
printf '#!/bin/sh\nexit 0\n' >"$root$guard_path"
chmod +x "$root$guard_path"
for unit in "${units[@]}"; do
    cp "$unit_dir/$unit" "$root/etc/systemd/system/$unit"
done

status=0
output=$(systemd-analyze verify --man=no --root="$root" "${instances[@]}" 2>&1) || status=$?
if [[ -n $output ]]; then
    printf '%s\n' "$output" >&2
fi
if [[ $status -ne 0 ]] || grep -Eq 'vllm-guard(@[A-Za-z0-9_.-]*)?\.service' <<<"$output"; then
    echo "check-systemd: FAILED (systemd-analyze verify exit $status; see above)" >&2
    exit 1
fi
echo "check-systemd: ok ($unit_dir: ${instances[*]}; $(systemd-analyze --version | head -n1))"
