#!/usr/bin/env bash
# Stop the cluster of .ci/slurm-up.sh (same SLURM_PREFIX): cancel every job, TERM all the
# daemons slurm-up started at once, wait (bounded), KILL stragglers, and remove
# /etc/slurm/slurm.conf if it is slurm-up's symlink: with a slurm.conf present but no
# slurmctld, every `snakemake` run with the slurm plugin installed stalls ~10 s at start-up.
# Safe to run twice, and when slurm-up never ran. Logs stay under the prefix.
#
# Env: SLURM_PREFIX        as for slurm-up.sh (default /tmp/infoopt-slurm)
#      SLURM_DOWN_TIMEOUT  seconds to wait for jobs, then for daemons, to end (default 20)
set -uo pipefail

P=${SLURM_PREFIX:-/tmp/infoopt-slurm}
GRACE=${SLURM_DOWN_TIMEOUT:-20}
CONF=/etc/slurm/slurm.conf
OWN_CONF=$P/etc/slurm.conf
DAEMONS=$P/run/daemons
T0=$SECONDS

# alive NAME PID: PID runs the program NAME (a recorded pid may have been reused since).
alive() { [ "$(cat "/proc/$2/comm" 2>/dev/null)" = "$1" ]; }

names=() pids=()
if [ -f "$DAEMONS" ]; then
    while read -r name pid; do
        if alive "$name" "$pid"; then
            names+=("$name") pids+=("$pid")
        fi
    done <"$DAEMONS"
fi

# Cancel jobs first: killed daemons would leave slurmstepd and the jobs' processes running.
if [[ " ${names[*]} " == *" slurmctld "* ]]; then
    export SLURM_CONF=$OWN_CONF
    jobs=$(timeout 10 squeue -h -o %A 2>/dev/null)
    if [ -n "$jobs" ]; then
        # shellcheck disable=SC2086  # one job id per word
        timeout 10 scancel $jobs
        deadline=$((SECONDS + GRACE))
        while [ -n "$(timeout 10 squeue -h -o %A 2>/dev/null)" ] && [ "$SECONDS" -lt "$deadline" ]; do
            sleep 0.2
        done
    fi
fi

if [ ${#pids[@]} -gt 0 ]; then
    kill -TERM "${pids[@]}" 2>/dev/null
    deadline=$((SECONDS + GRACE))
    for i in "${!pids[@]}"; do
        while alive "${names[$i]}" "${pids[$i]}" && [ "$SECONDS" -lt "$deadline" ]; do
            sleep 0.1
        done
        if alive "${names[$i]}" "${pids[$i]}"; then
            echo "slurm-down: ${names[$i]} (pid ${pids[$i]}) outlived SIGTERM by ${GRACE}s: SIGKILL" >&2
            kill -KILL "${pids[$i]}" 2>/dev/null
        fi
    done
fi
rm -f "$DAEMONS"

if [ -L "$CONF" ] && [ "$(readlink "$CONF")" = "$OWN_CONF" ]; then
    rm -f "$CONF"
fi

stopped=()
for i in "${!pids[@]}"; do stopped+=("${names[$i]}(${pids[$i]})"); done
echo "slurm-down: stopped ${stopped[*]:-nothing} in $((SECONDS - T0))s; logs in $P/log"
