#!/usr/bin/env bash
# A real SLURM on this one machine, for the cluster tests (tests/cluster/test_slurm.py):
#
#   tests/cluster/slurm.sh up      install if missing, configure, start; returns once `sinfo` shows the node idle
#   tests/cluster/slurm.sh down    stop the daemons this script started (jobs still queued are cancelled first)
#   tests/cluster/slurm.sh status  the daemons' pids and `sinfo`; exit status 0 when the node is up and usable
#
# Run as root (it installs packages and writes /etc/slurm). `up` and `down` are idempotent.
#
# What `up` sets up (Debian 12 packages, Slurm 22.05):
#   - apt packages: slurm-wlm (slurmctld, slurmd, the plugins), slurm-client (sbatch, squeue, scontrol, sacct),
#     munge (authentication between the commands and the daemons);
#   - munged, run as the munge user with the key the package generated (/etc/munge/munge.key);
#   - /etc/slurm/slurm.conf (written by this script, a previous one kept as slurm.conf.orig-frossl): cluster
#     "frossl", slurmctld on this host, one node (this host, its CPU count and 90% of its memory), one default
#     partition "debug". Without systemd or writable cgroups here: ProctrackType=proctrack/linuxproc (process tree
#     by parent pid), TaskPlugin=task/none, JobAcctGatherType=jobacct_gather/linux. SelectType=select/cons_tres
#     with CR_Core: one job per CPU core, memory requests checked against the node but not consumed (so a 2-job
#     sweep on a 2-core machine runs both at once). JobRequeue=1 (a running batch job may requeue itself with
#     `scontrol requeue`), KillWait=30 (SIGTERM, then SIGKILL 30 s later);
#   - accounting, so that `sacct` lists the jobs: in Slurm 22.05 sacct reads only the accounting database behind
#     slurmdbd (`accounting_storage/filetxt` was removed long ago; `accounting_storage/none` leaves sacct with
#     "Slurm accounting storage is disabled"). So `up` also installs mariadb-server and slurmdbd, starts MariaDB
#     (mysqld_safe, socket in /run/mysqld) with a database slurm_acct_db and a user slurm, writes
#     /etc/slurm/slurmdbd.conf, starts slurmdbd, registers the cluster, and slurm.conf says
#     AccountingStorageType=accounting_storage/slurmdbd (6 s more at start-up). FROSSL_SLURMDBD=0 leaves them out:
#     then finished jobs are listed only by the job completion log and `scontrol show job <id>` (MinJobAge=3600
#     keeps a finished job in slurmctld's memory for an hour, with its state and Restarts count);
#   - the job completion log, always: JobCompType=jobcomp/filetxt, JobCompLoc=/var/log/slurm/jobcomp.log (one
#     line per finished job segment: JobId, Name, JobState, times, NodeList, ExitCode, …);
#   - daemons started directly (no systemd): slurmctld and slurmd as root, pid files in /run, logs in
#     /var/log/slurm/{slurmctld,slurmd}.log, state in /var/lib/slurm/{slurmctld,slurmd}.
set -euo pipefail

HOST=$(hostname -s)
CONF=/etc/slurm/slurm.conf
LOG=/var/log/slurm
STATE=/var/lib/slurm
MARK="# written by frossl_lit tests/cluster/slurm.sh"
DBD=${FROSSL_SLURMDBD:-1}

die() { echo "slurm.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root"

pid_alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

install_packages() {
  local missing=()
  command -v slurmctld >/dev/null || missing+=(slurm-wlm)
  command -v sbatch >/dev/null || missing+=(slurm-client)
  command -v munged >/dev/null || missing+=(munge)
  if [ "$DBD" = 1 ]; then
    command -v slurmdbd >/dev/null || missing+=(slurmdbd)
    command -v mariadbd >/dev/null || command -v mysqld >/dev/null || missing+=(mariadb-server)
  fi
  if [ ${#missing[@]} -gt 0 ]; then
    echo "slurm.sh: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

write_conf() {
  local cpus mem_mb accounting
  cpus=$(nproc)
  mem_mb=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
  accounting="AccountingStorageType=accounting_storage/none"
  [ "$DBD" = 1 ] && accounting="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=$HOST"
  mkdir -p /etc/slurm "$LOG" "$STATE/slurmctld" "$STATE/slurmd"
  if [ -f "$CONF" ] && ! grep -q "$MARK" "$CONF"; then cp "$CONF" "$CONF.orig-frossl"; fi
  local before=""
  [ -f "$CONF" ] && before=$(cat "$CONF")
  cat > "$CONF" <<EOF
$MARK
ClusterName=frossl
SlurmctldHost=$HOST
AuthType=auth/munge
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$STATE/slurmctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
JobCompType=jobcomp/filetxt
JobCompLoc=$LOG/jobcomp.log
JobAcctGatherType=jobacct_gather/linux
$accounting
ReturnToService=2
JobRequeue=1
KillWait=30
MinJobAge=3600
InactiveLimit=0
SlurmdTimeout=60
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
  chmod 644 "$CONF"
  CHANGED=0
  [ "$before" = "$(cat "$CONF")" ] || CHANGED=1  # running daemons are restarted to read it
}

start_munge() {
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge
  chmod 755 /run/munge
  if ! pid_alive /run/munge/munged.pid; then
    runuser -u munge -- /usr/sbin/munged
  fi
  for _ in $(seq 50); do munge -n </dev/null | unmunge >/dev/null 2>&1 && return 0; sleep 0.2; done
  die "munged does not answer (see /var/log/munge/munged.log)"
}

start_slurmdbd() {
  [ "$DBD" = 1 ] || return 0
  mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
  if ! mysqladmin ping >/dev/null 2>&1; then
    (mysqld_safe >/dev/null 2>&1 &)
    touch /run/frossl-started-mysqld  # `down` stops only a MariaDB that `up` started
    for _ in $(seq 60); do mysqladmin ping >/dev/null 2>&1 && break; sleep 0.5; done
  fi
  mysql -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db; CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'frossl';
            GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
  cat > /etc/slurm/slurmdbd.conf <<EOF
$MARK
AuthType=auth/munge
DbdHost=$HOST
SlurmUser=root
PidFile=/run/slurmdbd.pid
LogFile=$LOG/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=frossl
StorageLoc=slurm_acct_db
EOF
  chmod 600 /etc/slurm/slurmdbd.conf
  pid_alive /run/slurmdbd.pid || slurmdbd
  for _ in $(seq 60); do sacctmgr -n list cluster >/dev/null 2>&1 && break; sleep 0.5; done
  sacctmgr -i add cluster frossl >/dev/null 2>&1 || true
}

node_state() { sinfo -h -n "$HOST" -o %T 2>/dev/null | head -1; }

up() {
  install_packages
  write_conf
  start_munge
  start_slurmdbd
  if [ "$CHANGED" = 1 ]; then stop_pidfile /run/slurmd.pid; stop_pidfile /run/slurmctld.pid; fi
  pid_alive /run/slurmctld.pid || slurmctld
  pid_alive /run/slurmd.pid || slurmd
  local state=""
  for _ in $(seq 120); do
    state=$(node_state)
    case "$state" in
      idle|mixed|allocated) echo "slurm.sh: up (node $HOST $state)"; return 0 ;;
      down*|drain*) scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true ;;
    esac
    sleep 0.5
  done
  die "node $HOST is '${state:-not listed}' after 60 s (see $LOG/slurmctld.log and $LOG/slurmd.log)"
}

stop_pidfile() {
  local file=$1
  if pid_alive "$file"; then
    local pid
    pid=$(cat "$file")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
}

down() {
  if pid_alive /run/slurmctld.pid; then
    scancel --full --state=PENDING,RUNNING,SUSPENDED --user=root >/dev/null 2>&1 || true
    squeue -h -o %i 2>/dev/null | xargs -r scancel >/dev/null 2>&1 || true
    sleep 1
  fi
  stop_pidfile /run/slurmd.pid
  stop_pidfile /run/slurmctld.pid
  stop_pidfile /run/slurmdbd.pid
  if [ -f /run/frossl-started-mysqld ]; then mysqladmin shutdown >/dev/null 2>&1 || true; rm -f /run/frossl-started-mysqld; fi
  stop_pidfile /run/munge/munged.pid
  echo "slurm.sh: down"
}

status() {
  local ok=0
  local names="munge/munged slurmctld slurmd"
  [ "$DBD" = 1 ] && names="munge/munged slurmdbd slurmctld slurmd"
  for name in $names; do
    if pid_alive "/run/$name.pid"; then echo "$name: running (pid $(cat "/run/$name.pid"))"; else echo "$name: stopped"; ok=1; fi
  done
  [ "$ok" = 0 ] && sinfo
  case "$(node_state)" in idle|mixed|allocated) ;; *) ok=1 ;; esac
  return $ok
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) die "usage: $0 up|down|status" ;;
esac
