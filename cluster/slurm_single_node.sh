#!/usr/bin/env bash
# A one-machine SLURM cluster (slurmctld + slurmd + munge on this host), to try the study's
# SLURM script (cluster/slurm_ray.sbatch) before a real cluster, and for its test
# (tests/test_study_on_slurm.py). Needs root and Debian's slurm-wlm + munge (22.05):
#     apt-get install -y slurm-wlm munge && cluster/slurm_single_node.sh
# Idempotent, and refuses to touch a SLURM it did not set up: writes /etc/slurm/slurm.conf for
# this host (CPUs and memory as it has them) and starts the three daemons unless they run
# (restarting them when that file changed). No cgroup.conf (slurmd 22.05 refuses to start with
# one it cannot use) and no accounting database (`sacct` answers "accounting storage is
# disabled"; `squeue` and `sbatch --wait` work).
set -euo pipefail
if [ "$(id -u)" != 0 ]; then echo "slurm_single_node.sh: run as root (it writes /etc/slurm and starts daemons)" >&2; exit 2; fi
for cmd in slurmctld slurmd munged sbatch; do
    command -v "$cmd" >/dev/null || { echo "slurm_single_node.sh: $cmd not found: apt-get install -y slurm-wlm munge" >&2; exit 2; }
done
host=$(hostname -s)
cpus=$(nproc --all)  # (plain nproc obeys OMP_NUM_THREADS: 1 under CI's OMP_NUM_THREADS=1)
mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 8 / 10 ))  # 80 %: slurmd refuses a node declaring more than it has

if ! pgrep -x munged >/dev/null; then
    if [ ! -s /etc/munge/munge.key ] || [ "$(stat -c %s /etc/munge/munge.key)" -lt 1024 ]; then
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
    chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
    mkdir -p /run/munge /var/log/munge /var/lib/munge && chown munge:munge /run/munge /var/log/munge /var/lib/munge
    su -s /bin/sh munge -c /usr/sbin/munged
fi

mark="# written by ecgssl-book cluster/slurm_single_node.sh"
if [ -e /etc/slurm/slurm.conf ] && ! grep -qF "$mark" /etc/slurm/slurm.conf; then
    echo "slurm_single_node.sh: /etc/slurm/slurm.conf exists and is not ours: this host has a SLURM set up; leaving it alone" >&2
    exit 2
fi
mkdir -p /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
conf=$(cat <<CONF
$mark
ClusterName=ecgssl
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
NodeName=$host CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=main Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
)
rm -f /etc/slurm/cgroup.conf

if [ "$(cat /etc/slurm/slurm.conf 2>/dev/null)" != "$conf" ]; then  # new, or this host changed
    printf '%s\n' "$conf" > /etc/slurm/slurm.conf
    if pgrep -x slurmctld >/dev/null || pgrep -x slurmd >/dev/null; then  # daemons on the old one
        pkill -x slurmctld || true; pkill -x slurmd || true
        for _ in $(seq 30); do pgrep -x slurmctld >/dev/null || pgrep -x slurmd >/dev/null || break; sleep 1; done
    fi
fi
pgrep -x slurmctld >/dev/null || slurmctld
pgrep -x slurmd >/dev/null || slurmd
for _ in $(seq 60); do  # the node answers idle (or mixed/allocated: already running jobs)
    if sinfo -h -N -o %T 2>/dev/null | grep -qE "idle|mix|alloc"; then sinfo; exit 0; fi
    sleep 1
done
echo "slurm_single_node.sh: the node did not come up; see /var/log/slurm/slurmd.log and slurmctld.log" >&2
sinfo -N -l >&2 || true
exit 1
