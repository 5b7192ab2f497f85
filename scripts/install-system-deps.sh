#!/usr/bin/env bash
# Installs the Debian packages the real test bed needs (zfs-fuse pools, a real
# qbittorrent-nox and rtorrent, peer tools for benchmarks). Idempotent: touches apt only when
# something is missing, so it is cheap to call at the start of every CI job.
set -euo pipefail

PACKAGES=(zfs-fuse qbittorrent-nox rtorrent mktorrent b3sum jdupes rdfind hyperfine curl wget dash busybox chromium chromium-driver)

missing=()
for pkg in "${PACKAGES[@]}"; do
    # dpkg-query is the only reliable "installed" check: a binary on PATH may come from elsewhere.
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    if [[ "$status" == "install ok installed" ]]; then
        echo "present: $pkg"
    else
        missing+=("$pkg")
    fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
    echo "all system packages present, nothing to do"
    exit 0
fi

echo "missing: ${missing[*]}"
if [[ $(id -u) -ne 0 ]]; then
    echo "error: must run as root to install: ${missing[*]} (try: sudo $0)" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
echo "running apt-get update"
apt-get update -q
echo "installing: ${missing[*]}"
apt-get install -y -q --no-install-recommends "${missing[@]}"
echo "installed: ${missing[*]}"
