#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for tests and CI: `bash launch/slurm_local.sh [start|stop|status]`.
#
# start   installs Debian's slurm-wlm (+ munge) with apt when sbatch is absent, writes /etc/slurm/slurm.conf
#         for this host (one node with all CPUs, partition "debug", munge auth, no accounting daemon), starts
#         munged, slurmctld and slurmd as plain background daemons (no systemd needed) and waits until sinfo
#         shows the node idle. Idempotent: daemons already answering are left alone, and a slurm.conf this
#         script did not write is never overwritten (then it only waits for that cluster).
# stop    stops the daemons this script started (pid files under $SLURM_LOCAL_DIR), nothing else.
# status  prints sinfo / which daemons run; exit 0 when the node is up.
#
# Exit codes: 0 ok; 1 failed (message on stderr); 3 this OS cannot run it (not Linux, no apt and no slurm,
# or not root and slurm absent) -- tests skip with that message.
#
# Accounting: AccountingStorageType=accounting_storage/none (slurmdbd needs a MySQL server, too heavy for CI),
# so `sacct` has no data here; launch/backends/slurm.py tracks jobs with squeue and reads each run's
# status.json for the outcome. Jobs run as the submitting user (root in CI).
set -euo pipefail

ACTION="${1:-start}"
STATE_DIR="${SLURM_LOCAL_DIR:-/var/lib/slurm-local}"
CONF=/etc/slurm/slurm.conf
MARK="# written by launch/slurm_local.sh"
NODE="$(hostname -s 2>/dev/null || hostname)"
WAIT_S="${SLURM_LOCAL_WAIT_S:-60}"

say() { echo "slurm_local: $*" >&2; }
cannot() { say "cannot run SLURM here: $*"; exit 3; }

pid_alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

node_idle() {
  # idle / mixed / allocated all mean the node is up and accepting jobs.
  local st
  st="$(sinfo -h -N -n "$NODE" -o '%t' 2>/dev/null | head -n1 || true)"
  [[ "$st" =~ ^(idle|mix|alloc|comp) ]]
}

install_slurm() {
  command -v sbatch >/dev/null && command -v slurmctld >/dev/null && command -v slurmd >/dev/null && return 0
  [[ "$(uname -s)" == Linux ]] || cannot "not Linux ($(uname -s))"
  command -v apt-get >/dev/null || cannot "sbatch is absent and there is no apt-get to install slurm-wlm"
  [[ "$(id -u)" == 0 ]] || cannot "sbatch is absent and installing slurm-wlm needs root (run: sudo $0 start)"
  say "installing slurm-wlm with apt-get (about a minute)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null || say "apt-get update failed; trying the cached package lists"
  # Debian's postinst scripts try to start services; without systemd that fails noisily, so block it.
  local rc_d=/usr/sbin/policy-rc.d created_rc_d=0
  if [[ ! -e "$rc_d" ]]; then printf '#!/bin/sh\nexit 101\n' >"$rc_d"; chmod +x "$rc_d"; created_rc_d=1; fi
  local ok=0
  apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null || ok=$?
  [[ $created_rc_d == 1 ]] && rm -f "$rc_d"
  [[ $ok == 0 ]] || { say "apt-get install slurm-wlm munge failed (exit $ok)"; exit 1; }
}

write_conf() {
  if [[ -f "$CONF" ]] && ! grep -qF "$MARK" "$CONF"; then
    say "$CONF exists and was not written by this script; using that cluster as is"
    return 0
  fi
  local cpus mem_mb tmp
  cpus="$(nproc)"
  mem_mb="$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)"
  mkdir -p /etc/slurm "$STATE_DIR"/{ctld,d,log}
  tmp="$(mktemp)"
  cat >"$tmp" <<EOF
$MARK -- a single-node test cluster; delete this file to let it be rewritten.
ClusterName=local
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$STATE_DIR/ctld
SlurmdSpoolDir=$STATE_DIR/d
SlurmctldPidFile=$STATE_DIR/slurmctld.pid
SlurmdPidFile=$STATE_DIR/slurmd.pid
SlurmctldLogFile=$STATE_DIR/log/slurmctld.log
SlurmdLogFile=$STATE_DIR/log/slurmd.log
# No cgroups: containers and CI machines often lack a writable cgroup tree.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
# Finished jobs stay visible to squeue/scontrol for 5 minutes (there is no sacct here).
MinJobAge=300
KillWait=30
SlurmdTimeout=60
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
  if ! cmp -s "$tmp" "$CONF" 2>/dev/null; then mv "$tmp" "$CONF"; else rm -f "$tmp"; fi
  chmod 644 "$CONF"
}

start_munge() {
  if munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then return 0; fi
  mkdir -p /etc/munge /run/munge /var/log/munge /var/lib/munge
  if [[ ! -s /etc/munge/munge.key ]]; then
    if command -v mungekey >/dev/null; then mungekey --create --keyfile=/etc/munge/munge.key
    else dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none; fi
  fi
  local user=root
  id munge >/dev/null 2>&1 && user=munge
  chown -R "$user" /etc/munge /run/munge /var/log/munge /var/lib/munge
  chmod 700 /etc/munge; chmod 400 /etc/munge/munge.key; chmod 755 /run/munge
  if [[ $user == munge ]]; then
    runuser -u munge -- /usr/sbin/munged
  else
    /usr/sbin/munged --force
  fi
  cp /run/munge/munged.pid "$STATE_DIR/munged.pid" 2>/dev/null || true
  for _ in $(seq 20); do munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && return 0; sleep 0.5; done
  say "munged did not come up (see /var/log/munge/munged.log)"; exit 1
}

start() {
  install_slurm
  mkdir -p "$STATE_DIR"
  if [[ -f "$CONF" ]] && ! grep -qF "$MARK" "$CONF"; then
    write_conf
  else
    write_conf
    start_munge
    pid_alive "$STATE_DIR/slurmctld.pid" || slurmctld
    pid_alive "$STATE_DIR/slurmd.pid" || slurmd -N "$NODE"
  fi
  local deadline=$((SECONDS + WAIT_S))
  until node_idle; do
    if ((SECONDS > deadline)); then
      say "node $NODE not idle after ${WAIT_S}s: $(sinfo -h -N 2>&1 | head -n3)"
      say "logs: $STATE_DIR/log/slurmctld.log, $STATE_DIR/log/slurmd.log"
      exit 1
    fi
    # A node left DOWN by an earlier, unclean stop comes back with an explicit resume.
    if sinfo -h -N -n "$NODE" -o '%t' 2>/dev/null | grep -qE '^(down|drain)'; then
      scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true
    fi
    sleep 1
  done
  say "node $NODE is up: $(sinfo -h -o '%P %a %D %t' | head -n1)"
}

stop() {
  local name
  for name in slurmd slurmctld munged; do
    local pf="$STATE_DIR/$name.pid"
    if pid_alive "$pf"; then
      kill "$(cat "$pf")" 2>/dev/null || true
      for _ in $(seq 50); do pid_alive "$pf" || break; sleep 0.2; done
      say "stopped $name"
    fi
    rm -f "$pf"
  done
}

status() {
  local name
  for name in munged slurmctld slurmd; do
    if pid_alive "$STATE_DIR/$name.pid"; then echo "$name: running (pid $(cat "$STATE_DIR/$name.pid"))"
    else echo "$name: not started by this script"; fi
  done
  command -v sinfo >/dev/null || { echo "sinfo: not installed"; return 1; }
  # Our own cluster with no controller: say so at once (sinfo would retry the connection for seconds).
  if grep -qF "$MARK" "$CONF" 2>/dev/null && ! pid_alive "$STATE_DIR/slurmctld.pid"; then
    echo "cluster: down"; return 1
  fi
  sinfo -N 2>&1 || true
  node_idle
}

case "$ACTION" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 [start|stop|status]" >&2; exit 2 ;;
esac
