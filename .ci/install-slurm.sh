#!/usr/bin/env bash
# Install the Debian packages of a single-node Slurm with accounting (see .ci/slurm-up.sh).
# Idempotent: packages that are already installed are left alone. Quiet unless it fails.
# Needs root (Debian 12: Slurm 22.05, munge 0.5, MariaDB 10.11).
set -euo pipefail

# slurmdbd + mariadb-server give `sacct`, the slurm executor plugin's default status command.
# --no-install-recommends: slurm-wlm's Recommends pull ~40 packages (hdf5, rrd, ipmi, rocm...) nobody here uses.
PACKAGES=(slurmctld slurmd slurm-client slurmdbd munge mariadb-server)

missing=()
for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "install-slurm: must run as root to install: ${missing[*]}" >&2
    exit 1
fi

log=$(mktemp "${TMPDIR:-/tmp}/install-slurm.XXXXXX.log")
trap 'rm -f "$log"' EXIT
if ! {
    apt-get update -q &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
} >"$log" 2>&1; then
    cat "$log" >&2
    echo "install-slurm: apt-get failed installing: ${missing[*]}" >&2
    exit 1
fi
