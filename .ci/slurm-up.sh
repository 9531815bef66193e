#!/usr/bin/env bash
# A single-node SLURM on the loopback for the cluster tests (`pytest -m slurm`): munge + slurmctld +
# slurmd from Debian's slurm-wlm, configuration and state under $PTPLAN_SLURM_DIR (default
# /tmp/ptplan-slurm), nothing written to /etc/slurm. Idempotent: a running node is left as is.
# Clients need SLURM_CONF=$PTPLAN_SLURM_DIR/slurm.conf; stop the daemons with .ci/slurm-down.sh.
set -euo pipefail

SLURM_DIR=${PTPLAN_SLURM_DIR:-/tmp/ptplan-slurm}
CPUS=${PTPLAN_SLURM_CPUS:-2}

if ! command -v slurmctld >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq slurm-wlm munge >/dev/null
fi

host=$(hostname -s)
mkdir -p "$SLURM_DIR"/{state,spool,log}
export SLURM_CONF="$SLURM_DIR/slurm.conf"
cat > "$SLURM_CONF.new" <<CONF
ClusterName=ptplan-ci
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
StateSaveLocation=$SLURM_DIR/state
SlurmdSpoolDir=$SLURM_DIR/spool
SlurmctldPidFile=$SLURM_DIR/slurmctld.pid
SlurmdPidFile=$SLURM_DIR/slurmd.pid
SlurmctldLogFile=$SLURM_DIR/log/slurmctld.log
SlurmdLogFile=$SLURM_DIR/log/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
MpiDefault=none
KillWait=10
MinJobAge=300
SchedulerType=sched/backfill
NodeName=$host NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=20000 State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
mv "$SLURM_CONF.new" "$SLURM_CONF"

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# munge: the key from `mungekey -c` (the package may have made one), munged as the munge user.
[ -s /etc/munge/munge.key ] || { mungekey -c -k /etc/munge/munge.key; chown munge:munge /etc/munge/munge.key; }
mkdir -p /run/munge && chown munge:munge /run/munge
if ! alive /run/munge/munged.pid; then
  runuser -u munge -- munged
fi
for _ in $(seq 1 20); do munge -n >/dev/null 2>&1 && break; sleep 0.25; done

alive "$SLURM_DIR/slurmctld.pid" || slurmctld
alive "$SLURM_DIR/slurmd.pid" || slurmd

for _ in $(seq 1 60); do
  state=$(sinfo -h -N -o %t 2>/dev/null | head -1)  # idle* while slurmd has not registered
  [ "$state" = idle ] || [ "$state" = mix ] || [ "$state" = alloc ] && break
  sleep 0.5
done
case "$state" in
  idle|mix|alloc) echo "SLURM node $host $state (SLURM_CONF=$SLURM_CONF)";;
  *) echo "SLURM node $host did not come up (state '${state:-none}'); logs in $SLURM_DIR/log" >&2; exit 1;;
esac
