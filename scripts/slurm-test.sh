#!/usr/bin/env bash
# slurm-test.sh - a real Slurm round trip for `llmlab sweep --slurm --submit`.
#
#   scripts/slurm-test.sh LLMLAB_BINARY [SOURCE_DIR]
#
# Installs Debian's slurm-wlm and munge when missing, writes a single-node
# slurm.conf for localhost in a temporary directory, starts munged, slurmctld and
# slurmd there, checks the generated array script with `sbatch --test-only`,
# submits experiments/sweep_example.lua (6 tasks) with --slurm --submit, waits for
# the array and the merge job, checks the merged file with `llmlab report`, and
# stops the daemons it started (by pid).  Needs root (daemons run as root here);
# otherwise, or when the packages cannot be installed, it prints "SKIP: ..." and
# exits 77 (ctest's SKIP_RETURN_CODE).  Everything lives under one mktemp dir.
set -euo pipefail

LLMLAB=$(realpath "${1:?usage: slurm-test.sh LLMLAB_BINARY [SOURCE_DIR]}")
SRC=$(realpath "${2:-$(dirname "$0")/..}")
TIMEOUT=${SLURM_TEST_TIMEOUT:-150}
skip() { echo "SKIP: $*"; exit 77; }

[[ $(id -u) -eq 0 ]] || skip "the Slurm test starts slurmctld/slurmd and needs root"
need=()
for p in slurm-wlm munge; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if ((${#need[@]})); then
  echo "slurm-test: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}"; } >/dev/null 2>&1 ||
    skip "cannot install ${need[*]} (apt-get failed; offline?)"
fi
for b in munged slurmctld slurmd sbatch squeue scontrol; do
  command -v "$b" >/dev/null || skip "$b not found after installing slurm-wlm and munge"
done

T=$(mktemp -d /tmp/llmlab-slurm-XXXXXX)
PIDS=()
cleanup() {
  local rc=$?
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
  if [[ $rc -ne 0 && $rc -ne 77 ]]; then
    echo "slurm-test: FAILED (rc $rc); logs:" >&2
    tail -n 20 "$T"/*.log "$T"/work/sw/logs/* 2>/dev/null >&2 || true
  fi
  rm -rf "$T"
}
trap cleanup EXIT

mkdir -p "$T/munge" "$T/state" "$T/spool" "$T/work"
chmod 700 "$T/munge"
# munge: a fresh key and a private socket, so a system munged is left alone.
if command -v mungekey >/dev/null; then mungekey --create --keyfile="$T/munge/munge.key" >/dev/null 2>&1
else dd if=/dev/urandom of="$T/munge/munge.key" bs=1024 count=1 status=none; fi
chmod 400 "$T/munge/munge.key"
SOCK="$T/munge/munge.socket"
munged --key-file="$T/munge/munge.key" --socket="$SOCK" --pid-file="$T/munge/munged.pid" \
  --log-file="$T/munged.log" --seed-file="$T/munge/seed" --force --foreground >"$T/munged.out" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do [[ -S $SOCK ]] && break; sleep 0.1; done
[[ -S $SOCK ]] || { echo "slurm-test: munged did not start" >&2; exit 1; }

CPUS=$(nproc)
MEM_MB=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
(( MEM_MB > 512 )) || MEM_MB=512
HOST=localhost
cat >"$T/slurm.conf" <<EOF
ClusterName=llmlabtest
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SOCK
SlurmctldPort=$(( 20000 + RANDOM % 20000 ))
SlurmdPort=$(( 40001 + RANDOM % 20000 ))
StateSaveLocation=$T/state
SlurmdSpoolDir=$T/spool
SlurmctldPidFile=$T/slurmctld.pid
SlurmdPidFile=$T/slurmd.pid
SlurmctldLogFile=$T/slurmctld.log
SlurmdLogFile=$T/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=300
KillWait=5
Waittime=0
NodeName=$HOST NodeHostname=$(hostname) CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF="$T/slurm.conf"

slurmctld -D -f "$SLURM_CONF" >"$T/slurmctld.out" 2>&1 &
PIDS+=($!)
slurmd -D -f "$SLURM_CONF" -N "$HOST" >"$T/slurmd.out" 2>&1 &
PIDS+=($!)
up=0
for _ in $(seq 100); do
  if sinfo -h -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then up=1; break; fi
  sleep 0.2
done
((up)) || { echo "slurm-test: the node did not come up" >&2; sinfo >&2 || true; exit 1; }

# The site's [slurm] defaults come from an INI file; --max-parallel overrides one.
cat >"$T/work/llmlab.ini" <<EOF
[slurm]
partition = debug
time = 00:05:00
cpus_per_task = 1
max_parallel = 2
EOF

cd "$T/work"
start=$(date +%s.%N)
"$LLMLAB" sweep "$SRC/experiments/sweep_example.lua" --slurm --out sw --set repeats=1 --max-parallel 3 >"$T/gen.log"
grep -q -- '--array=0-5%3' sw/sweep.sbatch || { echo "slurm-test: array line wrong" >&2; cat sw/sweep.sbatch >&2; exit 1; }
grep -q -- '--partition=debug' sw/sweep.sbatch
sbatch --test-only sw/sweep.sbatch >"$T/testonly.log" 2>&1 ||
  { echo "slurm-test: sbatch --test-only rejected the script" >&2; cat "$T/testonly.log" sw/sweep.sbatch >&2; exit 1; }

out=$("$LLMLAB" sweep "$SRC/experiments/sweep_example.lua" --slurm --submit --out sw --set repeats=1 --max-parallel 3)
echo "$out"
arr=$(sed -n 's/^array job: //p' <<<"$out")
mrg=$(sed -n 's/^merge job: //p' <<<"$out")
[[ -n $arr && -n $mrg ]] || { echo "slurm-test: no job ids in: $out" >&2; exit 1; }

deadline=$(( $(date +%s) + TIMEOUT ))
while squeue -h -j "$arr,$mrg" 2>/dev/null | grep -q .; do
  if (( $(date +%s) > deadline )); then
    echo "slurm-test: jobs still queued after ${TIMEOUT}s" >&2; squeue >&2; exit 1
  fi
  sleep 0.5
done
state=$(scontrol show job "$mrg" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p' | head -1)
[[ -f sw/merged.h5 ]] || { echo "slurm-test: no merged.h5 (merge job state: ${state:-gone})" >&2; exit 1; }
end=$(date +%s.%N)

"$LLMLAB" report sw/merged.h5 --by k,window --metric mean_accepted --format csv >"$T/report.csv"
rows=$(tail -n +2 "$T/report.csv" | wc -l)
[[ $rows -eq 6 ]] || { echo "slurm-test: expected 6 report rows, got $rows" >&2; cat "$T/report.csv" >&2; exit 1; }
if grep -qE ',(nan|0)(,|$)' "$T/report.csv"; then
  echo "slurm-test: a task has no result" >&2; cat "$T/report.csv" >&2; exit 1
fi
ls sw/logs/slurm-"$arr"_*.out >/dev/null
awk -v a="$start" -v b="$end" 'BEGIN { printf "slurm-test: OK: 6 array tasks + merge job, submit to merged file in %.1f s\n", b - a }'
