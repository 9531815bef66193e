#!/usr/bin/env bash
# Stop the daemons .ci/slurm-up.sh started, by their pid files (slurmd, slurmctld, munged).
SLURM_DIR=${PTPLAN_SLURM_DIR:-/tmp/ptplan-slurm}
for pidfile in "$SLURM_DIR/slurmd.pid" "$SLURM_DIR/slurmctld.pid" /run/munge/munged.pid; do
  [ -f "$pidfile" ] || continue
  pid=$(cat "$pidfile")
  kill "$pid" 2>/dev/null || continue
  for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
done
exit 0
