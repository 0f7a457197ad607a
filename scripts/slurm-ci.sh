#!/usr/bin/env bash
# slurm-ci.sh: a real one-node Slurm cluster from Debian 12's packages, on loopback, for the
# Slurm executor's tests (supervisor/slurm TestRealSlurm…) and CI.
#
#   scripts/slurm-ci.sh install        # apt-get install slurmctld slurmd slurm-client munge (idempotent)
#   scripts/slurm-ci.sh up [DIR]       # a cluster under DIR (default: a new mktemp dir); prints DIR
#   scripts/slurm-ci.sh down DIR       # scontrol shutdown, wait for the daemons' pids, remove DIR
#   scripts/slurm-ci.sh purge          # apt-get purge what install added
#
# `up` writes DIR/env, one line `export SLURM_CONF=DIR/etc/slurm.conf`: every Slurm client
# needs it (without it they try configless DNS lookups and fail), so callers source it.
# The node n1 has 2 CPUs and two fake GPUs (character devices made with mknod under DIR/dev;
# GRES needs devices, not plain files), so `--gres=gpu:N` jobs see CUDA_VISIBLE_DEVICES.
# Scheduling runs without the default 3 s batch delay, jobs stay visible to squeue for
# MinJobAge=300 s after they end, and jobcomp/filetxt lets `sacct -c` answer without a
# database. Needs root (mknod, munged, slurmd). Slurm's ports (6817, 6818) are fixed, so one
# cluster per machine at a time; munged is shared and only stopped by the `down` of the `up`
# that started it.
set -euo pipefail

PKGS=(slurmctld slurmd slurm-client munge)
# What install may pull in besides PKGS (purge removes them too; apt keeps what was there).
DEPS=(slurm-wlm-basic-plugins libmunge2 liblua5.1-0)

log() { echo "slurm-ci: $*" >&2; }
die() {
	log "$*"
	exit 1
}

apt_get() {
	local sudo=()
	[ "$(id -u)" = 0 ] || sudo=(sudo)
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 "$@"
}

install_pkgs() {
	if command -v sbatch >/dev/null && command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null; then
		return 0
	fi
	apt_get update -qq
	apt_get install -y -qq --no-install-recommends "${PKGS[@]}" >/dev/null
}

purge_pkgs() {
	local present=()
	for p in "${PKGS[@]}" "${DEPS[@]}"; do
		dpkg -s "$p" >/dev/null 2>&1 && present+=("$p")
	done
	[ "${#present[@]}" -eq 0 ] || apt_get purge -y -qq "${present[@]}" >/dev/null
}

# wait_until SECONDS CMD...: poll CMD every 0.1 s until it succeeds, for at most SECONDS.
wait_until() {
	local deadline=$(($(date +%s) + $1))
	shift
	until "$@"; do
		[ "$(date +%s)" -lt "$deadline" ] || return 1
		sleep 0.1
	done
}

munged_alive() { [ -s /run/munge/munged.pid ] && kill -0 "$(cat /run/munge/munged.pid)" 2>/dev/null; }
node_idle() { [ "$(timeout 5 sinfo -h -N -o %T 2>/dev/null | sort -u)" = idle ]; }
pid_gone() { ! kill -0 "$1" 2>/dev/null; }

up() {
	[ "$(id -u)" = 0 ] || die "up needs root (mknod, munged, slurmd)"
	command -v slurmctld >/dev/null || die "Slurm is not installed; run: $0 install"
	local running
	if running=$(pgrep -x slurmctld); then
		die "a Slurm controller already runs here (pid $running); Slurm's ports allow one cluster per machine: stop it first ($0 down DIR)"
	fi
	local D=${1:-}
	[ -n "$D" ] || D=$(mktemp -d /tmp/slurmci.XXXXXX)
	mkdir -p "$D"
	D=$(cd "$D" && pwd)
	mkdir -p "$D"/{etc,state,spool/n1,log,dev,out}
	[ -e "$D/dev/nvidia0" ] || mknod "$D/dev/nvidia0" c 195 0
	[ -e "$D/dev/nvidia1" ] || mknod "$D/dev/nvidia1" c 195 1
	if ! munged_alive; then
		install -d -o munge -g munge -m 0755 /run/munge
		runuser -u munge -- /usr/sbin/munged
		touch "$D/state/munged.ours"
	fi
	local host
	host=$(hostname -s)
	printf 'AutoDetect=off\nNodeName=n1 Name=gpu File=%s/dev/nvidia[0-1]\n' "$D" >"$D/etc/gres.conf"
	cat >"$D/etc/slurm.conf" <<EOF
ClusterName=ci
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool/%n
SlurmctldPidFile=$D/state/slurmctld.pid
SlurmdPidFile=$D/spool/slurmd-%n.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$D/log/jobcomp.txt
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0,bf_interval=1
SlurmdParameters=config_overrides
ReturnToService=2
GresTypes=gpu
MinJobAge=300
KillWait=5
MailProg=/bin/true
NodeName=n1 NodeHostname=$host NodeAddr=127.0.0.1 CPUs=2 Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
	echo "export SLURM_CONF=$D/etc/slurm.conf" >"$D/env"
	export SLURM_CONF="$D/etc/slurm.conf"
	slurmctld -c
	slurmd -N n1
	if ! wait_until 30 node_idle; then
		log "node n1 did not become idle; sinfo says: $(sinfo -h -N -o '%T %E' 2>&1 || true)"
		tail -n 20 "$D/log/slurmctld.log" "$D/log/slurmd-n1.log" >&2 || true
		exit 1
	fi
	echo "$D"
}

down() {
	local D=${1:-}
	[ -n "$D" ] && [ -f "$D/env" ] || die "down needs the directory that up printed"
	# shellcheck disable=SC1091
	. "$D/env"
	local pids=() f
	for f in "$D/state/slurmctld.pid" "$D/spool/slurmd-n1.pid"; do
		[ -s "$f" ] && pids+=("$(cat "$f")")
	done
	scontrol shutdown >/dev/null 2>&1 || true
	for p in "${pids[@]}"; do
		if ! wait_until 30 pid_gone "$p"; then
			log "pid $p did not exit after scontrol shutdown; killing it"
			kill -9 "$p" 2>/dev/null || true
		fi
	done
	if [ -e "$D/state/munged.ours" ] && munged_alive; then
		local m
		m=$(cat /run/munge/munged.pid)
		kill "$m" 2>/dev/null || true
		wait_until 10 pid_gone "$m" || kill -9 "$m" 2>/dev/null || true
	fi
	rm -rf "$D"
}

case "${1:-}" in
install) install_pkgs ;;
up) up "${2:-}" ;;
down) down "${2:-}" ;;
purge) purge_pkgs ;;
*)
	echo "usage: $0 install | up [DIR] | down DIR | purge" >&2
	exit 2
	;;
esac
