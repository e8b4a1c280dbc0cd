#!/usr/bin/env bash
# Bring up a real single-node Slurm cluster on localhost, as root, without systemd:
# munged, MariaDB + slurmdbd (accounting, so that `sacct`, the slurm executor plugin's
# default status command, answers), slurmctld and slurmd.
#
# Env: SLURM_PREFIX      state, logs, configs and the daemon list (default /tmp/infoopt-slurm)
#      SLURM_UP_TIMEOUT  seconds each daemon may take to answer (default 60)
# Run .ci/install-slurm.sh first; stop everything with .ci/slurm-down.sh (same SLURM_PREFIX).
#
# slurm.conf must be readable at the compiled-in path /etc/slurm/slurm.conf: the in-job
# executor (snakemake-executor-plugin-slurm-jobstep) drops SLURM_CONF before its nested
# `srun`. It is a symlink into the prefix, which is how slurm-down.sh recognises it as ours.
set -euo pipefail

P=${SLURM_PREFIX:-/tmp/infoopt-slurm}
TIMEOUT=${SLURM_UP_TIMEOUT:-60}
CONF=/etc/slurm/slurm.conf
OWN_CONF=$P/etc/slurm.conf
SOCK=$P/run/munge/munge.socket.2
DAEMONS=$P/run/daemons
CLUSTER=infoopt
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

[ "$(id -u)" -eq 0 ] || { echo "slurm-up: must run as root" >&2; exit 1; }
for tool in munged munge mariadbd mariadb-install-db mariadb slurmdbd slurmctld slurmd sinfo sacct sacctmgr; do
    command -v "$tool" >/dev/null || { echo "slurm-up: $tool missing; run .ci/install-slurm.sh" >&2; exit 1; }
done
if [ -e "$CONF" ] || [ -L "$CONF" ]; then
    if [ "$(readlink "$CONF")" != "$OWN_CONF" ]; then
        echo "slurm-up: $CONF exists and is not ours (-> $(readlink "$CONF" || echo 'a regular file'));" \
            "refusing to replace it (another prefix: run slurm-down.sh with its SLURM_PREFIX)" >&2
        exit 1
    fi
fi

# alive NAME PID: PID runs the program NAME (a recorded pid may have been reused since).
alive() { [ "$(cat "/proc/$2/comm" 2>/dev/null)" = "$1" ]; }

if [ -f "$DAEMONS" ]; then
    while read -r name pid; do
        if alive "$name" "$pid"; then
            echo "slurm-up: $name (pid $pid) of $P is still running; run .ci/slurm-down.sh first" >&2
            exit 1
        fi
    done <"$DAEMONS"
fi

mkdir -p "$P"/{etc,log,state/ctld,state/d,munge,run/munge}
rm -f "$P"/log/*                  # this run's logs only, for the failure report
chmod 700 "$P/munge"              # munged: a private key dir,
chmod 755 "$P/run" "$P/run/munge" # but a socket dir that everyone can traverse
: >"$DAEMONS"

now() { echo "${EPOCHREALTIME/,/.}"; }
T0=$(now)

# fail MESSAGE LOG...: print the log tails that explain a failure, stop what was started, exit.
fail() {
    local msg=$1 log
    shift
    echo "slurm-up: FAILED: $msg" >&2
    for log in "$@"; do
        [ -s "$log" ] && { echo "----- tail of $log" >&2; tail -n 30 "$log" >&2; }
    done
    SLURM_PREFIX=$P "$HERE/slurm-down.sh" >&2 || true
    exit 1
}

# start NAME COMMAND...: run a daemon in the foreground of its own session, so its pid is
# known at once and no signal to this script's process group reaches it; slurm-down.sh
# stops exactly the daemons listed in $DAEMONS. Early errors land in log/NAME.out.
start() {
    local name=$1 pid tries=0
    shift
    setsid "$@" </dev/null >"$P/log/$name.out" 2>&1 &
    pid=$!
    echo "$name $pid" >>"$DAEMONS"
    # Until the forked shell has exec'ed the daemon, /proc shows another program name.
    while [ -e "/proc/$pid" ] && ! alive "$name" "$pid" && [ $((tries += 1)) -le 100 ]; do
        sleep 0.01
    done
}

# wait_for WHAT "LOG..." COMMAND...: poll COMMAND until it succeeds, at most $TIMEOUT s;
# fail at once if a daemon has exited meanwhile.
wait_for() {
    local what=$1 logs=$2 name pid
    shift 2
    local deadline=$((SECONDS + TIMEOUT))
    until "$@" >/dev/null 2>&1; do
        while read -r name pid; do
            # shellcheck disable=SC2086  # $logs is a space-separated list of paths
            alive "$name" "$pid" || fail "$name exited while waiting for $what" $logs "$P/log/$name.out"
        done <"$DAEMONS"
        # shellcheck disable=SC2086
        [ "$SECONDS" -lt "$deadline" ] || fail "$what did not come up within ${TIMEOUT}s" $logs
        sleep 0.2
    done
}

# ---- munge ------------------------------------------------------------------------------
if [ ! -f "$P/munge/munge.key" ]; then
    head -c 1024 /dev/urandom >"$P/munge/munge.key"
    chmod 400 "$P/munge/munge.key"
fi
# In the foreground, munged logs to stderr: log/munged.out.
start munged munged --foreground --key-file="$P/munge/munge.key" --socket="$SOCK" \
    --pid-file="$P/run/munge/munged.pid" --seed-file="$P/munge/munged.seed"
wait_for munged "$P/log/munged.out" sh -c "munge -n -S '$SOCK' | unmunge -S '$SOCK'"
T1=$(now)

# ---- MariaDB (slurmdbd's storage), bound to 127.0.0.1 only -------------------------------
if [ ! -d "$P/mysql/mysql" ]; then
    mariadb-install-db --no-defaults --user=root --datadir="$P/mysql" --skip-test-db \
        --auth-root-authentication-method=socket >"$P/log/mariadb-install.log" 2>&1 ||
        fail "mariadb-install-db failed" "$P/log/mariadb-install.log"
fi
start mariadbd mariadbd --no-defaults --user=root --datadir="$P/mysql" --socket="$P/run/mysqld.sock" \
    --pid-file="$P/run/mysqld.pid" --port=3307 --bind-address=127.0.0.1 \
    --log-error="$P/log/mariadb.err" --innodb-buffer-pool-size=64M
wait_for MariaDB "$P/log/mariadb.err" mariadb-admin --no-defaults -S "$P/run/mysqld.sock" -uroot ping
DB_PASS=$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
mariadb --no-defaults -S "$P/run/mysqld.sock" -uroot -e "
    CREATE OR REPLACE USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';" 2>"$P/log/mariadb-users.log" ||
    fail "creating the slurm database user failed" "$P/log/mariadb-users.log" "$P/log/mariadb.err"
T2=$(now)

# ---- configs -----------------------------------------------------------------------------
# The node line comes from the machine (CPUs, memory), renamed so the hostname does not matter.
NODE_LINE=$(slurmd -C | head -n 1 | sed 's/^NodeName=[^ ]*/NodeName=localhost/')
cat >"$OWN_CONF" <<EOF
# Single-node test cluster of infoopt's .ci/slurm-up.sh (SLURM_PREFIX=$P).
ClusterName=$CLUSTER
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire also delays a requeued job's restart (default 120 s).
AuthInfo=socket=$SOCK,cred_expire=15
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$P/state/ctld
SlurmdSpoolDir=$P/state/d
SlurmctldPidFile=$P/run/slurmctld.pid
SlurmdPidFile=$P/run/slurmd.pid
SlurmctldLogFile=$P/log/slurmctld.log
SlurmdLogFile=$P/log/slurmd.log
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
ReturnToService=2
# The plugin's squeue status path needs finished jobs kept >= 3x its first-check delay.
MinJobAge=300
# Without a default, a job that names no memory takes the whole node.
DefMemPerCPU=500
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
# The munge socket of the slurmctld->slurmdbd and sacct->slurmdbd connections (not AuthInfo's).
AccountingStoragePass=$SOCK
# Keep sbatch --comment (the executor plugin writes rule_<rule> there) in the accounting records.
AccountingStoreFlags=job_comment
$NODE_LINE State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
# slurmdbd reads slurmdbd.conf from dirname($SLURM_CONF); it holds a password: mode 600.
(
    umask 077
    cat >"$P/etc/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=socket=$SOCK
DbdHost=localhost
DbdPort=6819
SlurmUser=root
PidFile=$P/run/slurmdbd.pid
LogFile=$P/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=3307
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
)
mkdir -p "$(dirname "$CONF")"
ln -sfn "$OWN_CONF" "$CONF"

# ---- slurmdbd ----------------------------------------------------------------------------
SLURM_CONF=$OWN_CONF start slurmdbd slurmdbd -D
wait_for slurmdbd "$P/log/slurmdbd.log" sacctmgr -n list cluster
T3=$(now)

# ---- slurmctld + slurmd ------------------------------------------------------------------
start slurmctld slurmctld -D
start slurmd slurmd -D -N localhost
node_idle() { [ "$(sinfo -h -n localhost -o %T)" = idle ]; }
wait_for "an idle node in sinfo" "$P/log/slurmctld.log $P/log/slurmd.log" node_idle
# The controller registers the cluster with slurmdbd; only then does sacct answer.
sacct_answers() {
    sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER" &&
        [ -z "$(sacct -n -X --starttime now 2>&1 >/dev/null)" ]
}
wait_for sacct "$P/log/slurmctld.log $P/log/slurmdbd.log" sacct_answers
T4=$(now)

awk -v t0="$T0" -v t1="$T1" -v t2="$T2" -v t3="$T3" -v t4="$T4" -v p="$P" 'BEGIN {
    printf "slurm-up: ready in %.1fs (munge %.1fs, mariadb %.1fs, slurmdbd %.1fs, slurmctld+slurmd %.1fs); prefix %s\n",
        t4 - t0, t1 - t0, t2 - t1, t3 - t2, t4 - t3, p
}'
