#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# tests/kernels/vm.sh SERIES [OPTIONS] -- COMMAND [ARG...]
#
# Runs COMMAND as root under a Debian distribution kernel (SERIES: 5.10, 6.1 or 6.12, see
# fetch.sh) booted in qemu, on the host's own userland: the guest sees the host's / at the
# same paths (the repository, build/hoptrace, python3, curl, nginx...), starts in the
# directory vm.sh was called from, and may write anywhere (an overlay with a tmpfs upper
# layer: writes never reach the host; /run is a fresh tmpfs, /tmp the host's, as the
# repository may be there). COMMAND's stdout and stderr come out on vm.sh's
# stdout and stderr, and vm.sh exits with COMMAND's status.
#
# Options:
#   --smp N          virtual CPUs (default 2: multi-threaded TCG gives each its own host thread)
#   --mem MB         guest memory (default 2048)
#   --timeout S      kill qemu and fail (status 124) after S seconds (default 900)
#   --append ARGS    extra kernel command line
#   --dmesg          print the guest's kernel log on stderr after COMMAND
#   --keep-path      the caller's PATH in the guest (default: Debian root's standard PATH)
#   --bzimage        boot the compressed vmlinuz (slower; with KASLR) instead of vmlinux
#   -v, --verbose    boot timings on stderr
# Passed into the guest: CI and every HOPTRACE_* variable. HOME is /root.
#
# Why like this:
# - TCG (software emulation), not KVM: on the development VM /dev/kvm is missing or a
#   nested guest hangs. TCG boots a Debian kernel to userspace in about 2 s here (the
#   uncompressed vmlinux through its PVH entry; see boot_image).
# - No disk image: qemu shares the host's / read-only over virtio-9p (multidevs=remap, as
#   it spans several host file systems), and the initramfs (init.sh) stacks a tmpfs over it.
# - Two serial ports are the result channels: ttyS1 carries the command's stdout and then
#   a marker line with a per-run nonce and the exit status; ttyS0 is the console and
#   carries stderr. The kernel is booted "quiet loglevel=1" so that its messages stay out
#   of the output; a panic or an oops still prints there (they raise the console level),
#   and init.sh prints the kernel log when it holds a WARNING or BUG.
# - loglevel=1, not 0: panic() and oops raise the console level only when it is not 0
#   (console_verbose()), and level 1 lets only KERN_EMERG through otherwise.
# - The command and its environment travel as a second cpio archive appended to the
#   cached initramfs: the kernel unpacks concatenated archives in order.
set -euo pipefail
# shellcheck source=tests/kernels/lib.sh
. "$(dirname "$0")/lib.sh"

SMP=2
MEM=2048
TIMEOUT=900
APPEND=""
DMESG=0
VERBOSE=0
BZIMAGE=0
TMP=""
QEMU_PID=""

usage() {
	awk 'NR >= 3 && /^# Why/ { exit } NR >= 3' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
	if [ -n "$QEMU_PID" ] && kill -0 "$QEMU_PID" 2>/dev/null; then
		kill "$QEMU_PID" 2>/dev/null || true
	fi
	[ -n "$TMP" ] && rm -rf "$TMP"
	return 0
}

# quote WORD: single-quoted for the guest's /bin/sh
quote() {
	printf "'%s'" "${1//\'/\'\\\'\'}"
}

# The guest's PATH: a root login's on Debian, not the caller's. The caller's may start
# with version-manager shims (pyenv's python3 is a bash script that forks a dozen times:
# 6-10 s per python3 start under TCG, against 0.9 s for /usr/bin/python3); --keep-path
# passes the caller's PATH instead.
STD_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
KEEP_PATH=0

guest_path() {
	local p=$STD_PATH d
	if [ "$KEEP_PATH" = 1 ]; then
		p=$PATH
		for d in /usr/local/sbin /usr/sbin /sbin; do
			case ":$p:" in *":$d:"*) ;; *) p=$p:$d ;; esac
		done
	fi
	echo "$p"
}

# write_job DIR NONCE SERIES COMMAND...: DIR/job/env (for init.sh), DIR/job/cmd (run
# under the host's /bin/sh in the guest's chroot)
write_job() {
	local dir=$1 nonce=$2 series=$3 name rel
	shift 3
	rel=$(cat "$(series_dir "$series")/release")
	mkdir -p "$dir/job"
	{
		echo "VM_NONCE=$nonce"
		echo "VM_HOSTNAME=kernel-${series//./-}"
		echo "VM_MODULES_DIR=$(quote "$(series_dir "$series")/root/lib/modules/$rel")"
		echo "VM_DMESG=$DMESG"
		echo "VM_VERBOSE=$VERBOSE"
	} >"$dir/job/env"
	{
		echo "export PATH=$(quote "$(guest_path)")"
		echo "export HOME=/root USER=root LOGNAME=root SHELL=/bin/bash TERM=dumb LANG=C.UTF-8"
		for name in $(compgen -e); do
			case "$name" in
			CI | HOPTRACE_*) echo "export $name=$(quote "${!name}")" ;;
			esac
		done
		echo "cd $(quote "$(pwd -P)") || { echo 'vm.sh: the guest has no '$(quote "$(pwd -P)") >&2; exit 125; }"
		printf 'exec'
		for name in "$@"; do
			printf ' %s' "$(quote "$name")"
		done
		echo
	} >"$dir/job/cmd"
}

# filter_out NONCE RCFILE: the guest's stdout, minus the start marker (RCFILE.started is
# created then) and the status marker (which may follow output that did not end in a
# newline), with the serial line's \r removed
filter_out() {
	local line marker="HOPTRACE_VM_EXIT $1 "
	while IFS= read -r line || [ -n "$line" ]; do
		line=${line%$'\r'}
		case "$line" in
		"HOPTRACE_VM_START $1") : >"$2.started" ;;
		*"$marker"*)
			printf '%s' "${line%%"$marker"*}"
			echo "${line##*"$marker"}" >"$2"
			;;
		*) printf '%s\n' "$line" ;;
		esac
	done
}

# filter_err: the console; poweroff's "reboot: Power down" is KERN_EMERG, so it passes
# loglevel=1, but it is not news
filter_err() {
	local line
	while IFS= read -r line || [ -n "$line" ]; do
		line=${line%$'\r'}
		[[ "$line" =~ ^\[\ *[0-9.]+\]\ reboot:\ Power\ down$ ]] && continue
		printf '%s\n' "$line"
	done
}

# boot_image DIR: the uncompressed vmlinux through its PVH entry point when the kernel has
# one (every Debian kernel here): the bzImage spends 1-4 s of TCG time decompressing
# itself. The price is no KASLR (the PVH entry does not randomize); --bzimage has it.
boot_image() {
	local dir=$1 rel
	rel=$(cat "$dir/release")
	if [ "$BZIMAGE" = 0 ] && [ -f "$dir/vmlinux" ] && grep -qx CONFIG_PVH=y "$dir/root/boot/config-$rel" 2>/dev/null; then
		echo "$dir/vmlinux"
	else
		echo "$dir/vmlinuz"
	fi
}

now() {
	date +%s.%N
}

# run_guest SERIES DIR: boot the guest once with the job in $TMP/initrd; the command's
# status lands in $TMP/rc (empty if it never reported one), qemu's in QRC. Exits 124 on the
# timeout. The nonce is main's.
run_guest() {
	local series=$1 dir=$2 t0 t1 accel=tcg out_pid err_pid
	QRC=0
	mkfifo "$TMP/out" "$TMP/err"
	filter_out "$nonce" "$TMP/rc" <"$TMP/out" &
	out_pid=$!
	filter_err <"$TMP/err" >&2 &
	err_pid=$!

	[ "$SMP" -gt 1 ] && accel=tcg,thread=multi
	t0=$(now)
	# timeout puts qemu in a process group of its own: a terminal's ^C reaches vm.sh only,
	# whose EXIT trap stops timeout, which passes the signal on to qemu
	timeout -k 5 "$TIMEOUT" qemu-system-x86_64 \
		-accel "$accel" -cpu max -smp "$SMP" -m "$MEM" \
		-nographic -nodefaults -no-user-config -no-reboot -monitor none -nic none \
		-kernel "$(boot_image "$dir")" -initrd "$TMP/initrd" \
		-append "console=ttyS0 quiet loglevel=1 panic=-1 $APPEND" \
		-chardev "file,id=console,path=$TMP/err" -serial chardev:console \
		-chardev "file,id=stdout,path=$TMP/out" -serial chardev:stdout \
		-virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
		-device virtio-rng-pci \
		-fw_cfg name=etc/sercon-port,string=0 \
		</dev/null >"$TMP/qemu.log" 2>&1 &
	QEMU_PID=$!
	wait "$QEMU_PID" || QRC=$?
	QEMU_PID=""
	t1=$(now)
	# if qemu died before opening the fifos, this releases the readers blocked in open()
	: 1<>"$TMP/out" 2<>"$TMP/err"
	wait "$out_pid" "$err_pid" || true

	[ "$VERBOSE" = 1 ] && log "$series: qemu ran $(awk "BEGIN { printf \"%.1f\", $t1 - $t0 }") s (boot, command, power-off)"
	if [ "$QRC" = 124 ] || [ "$QRC" = 137 ]; then
		log "$series: timed out after $TIMEOUT s; qemu killed"
		exit 124
	fi
	if [ "$QRC" != 0 ]; then
		log "$series: qemu failed (status $QRC):"
		cat "$TMP/qemu.log" >&2
	fi
}


main() {
	local series nonce rc
	[ $# -ge 1 ] || usage
	series=$1
	shift
	check_series "$series"
	while [ $# -gt 0 ]; do
		case "$1" in
		--smp) SMP=$2 && shift 2 ;;
		--mem) MEM=$2 && shift 2 ;;
		--timeout) TIMEOUT=$2 && shift 2 ;;
		--append) APPEND=$2 && shift 2 ;;
		--dmesg) DMESG=1 && shift ;;
		--keep-path) KEEP_PATH=1 && shift ;;
		--bzimage) BZIMAGE=1 && shift ;;
		-v | --verbose) VERBOSE=1 && shift ;;
		--) shift && break ;;
		*) usage ;;
		esac
	done
	[ $# -ge 1 ] || usage
	ensure_pkgs qemu-system-x86_64:qemu-system-x86
	"$KERNELS_DIR/fetch.sh" "$series"
	local dir
	dir=$(series_dir "$series")

	TMP=$(mktemp -d /tmp/hoptrace-vm.XXXXXX)
	trap cleanup EXIT
	trap 'exit 130' INT TERM
	nonce=$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
	write_job "$TMP" "$nonce" "$series" "$@"
	(cd "$TMP" && find job | cpio -o -H newc -R 0:0 --quiet | gzip -1) >"$TMP/job.cpio.gz"
	cat "$dir/initramfs.cpio.gz" "$TMP/job.cpio.gz" >"$TMP/initrd"

	# A kernel that dies while booting, before the command starts, is an emulation flake
	# (seen once: an int3 oops in sched_clock_cpu at 1.5 s under multi-threaded TCG): boot
	# once more. A crash once the command runs is the command's.
	local attempt
	for attempt in 1 2; do
		rm -f "$TMP/out" "$TMP/err" "$TMP/rc" "$TMP/rc.started"
		run_guest "$series" "$dir"
		[ -s "$TMP/rc" ] || [ -e "$TMP/rc.started" ] || [ "$attempt" = 2 ] && break
		log "$series: the kernel died while booting, before the command started: booting again"
	done
	if ! [ -s "$TMP/rc" ]; then
		log "$series: the guest stopped without reporting a status (kernel panic? see above)"
		[ "$QRC" = 0 ] && [ -s "$TMP/qemu.log" ] && cat "$TMP/qemu.log" >&2
		exit 125
	fi
	rc=$(cat "$TMP/rc")
	exit "$rc"
}

main "$@"
