#!/bin/busybox sh
# shellcheck shell=dash
# SPDX-License-Identifier: BSD-2-Clause
# /init of the kernel matrix initramfs (busybox sh; fetch.sh packs it, vm.sh boots it).
#
# Brings up just enough of a system to run the host's own binaries on a Debian kernel:
# loads the kernel's modules for virtio-9p and overlayfs, mounts the host's / (shared
# read-only by qemu as "hostroot") under an overlay whose upper layer is tmpfs (the guest
# may write anywhere, nothing reaches the host), mounts the pseudo file systems BPF tools
# expect, chroots and runs /job/cmd (written by vm.sh, appended to the initramfs per run).
#
# Channels (vm.sh reads both):
#   ttyS0 = console: kernel messages (quiet; panics/oops still print), init's own
#           messages and the command's stderr
#   ttyS1 = the command's stdout, then "HOPTRACE_VM_EXIT <nonce> <status>"
# Then it powers off; qemu runs with -no-reboot, so a panic (panic=-1) also ends it.

/bin/busybox --install -s /bin
export PATH=/bin
mount -t devtmpfs devtmpfs /dev
exec </dev/null >/dev/ttyS0 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys

OUT=/dev/ttyS1
VM_NONCE=none
VM_HOSTNAME=guest
VM_MODULES_DIR=
VM_DMESG=0
VM_VERBOSE=0
# shellcheck disable=SC1091 # written by vm.sh
. /job/env
# no \r\n translation, no echo: the bytes the command writes are the bytes vm.sh gets
stty -F /dev/ttyS0 raw -echo 2>/dev/null
stty -F "$OUT" raw -echo

say() {
	echo "vm-init: $*"
}

finish() {
	echo "HOPTRACE_VM_EXIT $VM_NONCE $1" >"$OUT"
	# stty sets the line with TCSADRAIN: it returns once both ports are drained
	stty -F "$OUT" raw
	stty -F /dev/ttyS0 raw
	poweroff -f
	sleep 10
}

fail() {
	say "error: $*"
	finish 125
}

verbose() {
	[ "$VM_VERBOSE" = 1 ] && say "$(cut -d' ' -f1 /proc/uptime)s $*"
	return 0
}

verbose "userspace"
while read -r m; do
	insmod "/lib/modules/$m.ko" || fail "insmod $m failed"
done </lib/modules/load-order
verbose "modules loaded: $(tr '\n' ' ' </lib/modules/load-order)"

# the virtio device may still be probing right after insmod: retry briefly
n=0
until mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=262144 hostroot /mnt/lower 2>/dev/null; do
	n=$((n + 1))
	[ $n -lt 50 ] || fail "cannot mount the host root over 9p"
	sleep 0.1
done
mount -t tmpfs -o mode=0755 rw /mnt/rw || fail "tmpfs"
mkdir -p /mnt/rw/upper /mnt/rw/work
mount -t overlay -o lowerdir=/mnt/lower,upperdir=/mnt/rw/upper,workdir=/mnt/rw/work overlay /newroot ||
	fail "cannot mount the overlay root"
verbose "root mounted"

R=/newroot
# try_mount TYPE OPTIONS WHERE: a missing file system is reported, not fatal: the command
# may not need it, and the report itself is a fact about the kernel
try_mount() {
	mkdir -p "$R$3"
	mount -t "$1" -o "$2" "$1" "$R$3" || say "warning: cannot mount $1 at $3"
}
try_mount proc rw /proc
try_mount sysfs rw /sys
try_mount devtmpfs rw /dev
try_mount devpts newinstance,ptmxmode=0666,mode=0620,gid=5 /dev/pts
try_mount tmpfs mode=1777 /dev/shm
# /tmp stays the host's (seen through the overlay, writes kept in its tmpfs layer): the
# repository may be checked out there, as CI's clean clones can be
try_mount tmpfs mode=0755 /run
try_mount bpf mode=0700 /sys/fs/bpf
try_mount tracefs rw /sys/kernel/tracing
try_mount debugfs rw /sys/kernel/debug
try_mount cgroup2 rw /sys/fs/cgroup
# udev is not there to make these
for l in fd:/proc/self/fd stdin:/proc/self/fd/0 stdout:/proc/self/fd/1 stderr:/proc/self/fd/2; do
	ln -sf "${l#*:}" "$R/dev/${l%%:*}"
done

# the kernel's own modules for modprobe inside the guest (the host's /lib/modules has none)
if [ -n "$VM_MODULES_DIR" ] && [ -d "$R$VM_MODULES_DIR" ]; then
	rel=$(cat /release)
	chroot "$R" mkdir -p "/lib/modules/$rel"
	mount --bind "$R$VM_MODULES_DIR" "$R$(chroot "$R" readlink -f "/lib/modules/$rel")" ||
		say "warning: cannot bind the kernel modules"
fi

hostname "$VM_HOSTNAME"
echo "127.0.1.1 $VM_HOSTNAME" >>"$R/etc/hosts"
ip link set lo up || ifconfig lo 127.0.0.1 up || say "warning: cannot bring lo up"

mkdir -p "$R/run/hoptrace-vm"
cp /job/cmd "$R/run/hoptrace-vm/cmd"
verbose "running the command"
# vm.sh tells a kernel that died booting (boot again) from one the command crashed
echo "HOPTRACE_VM_START $VM_NONCE" >"$OUT"
chroot "$R" /bin/sh /run/hoptrace-vm/cmd <$R/dev/null >"$OUT" 2>/dev/ttyS0
rc=$?
verbose "command exited with $rc"

# oopses and panics print despite loglevel=1 (they raise the console level); warnings and
# BUG reports from inside the kernel do not, so show the kernel log from the first of them on
if [ "$VM_DMESG" = 1 ]; then
	say "kernel log:"
	dmesg
elif dmesg | grep -qE 'BUG:|Oops|WARNING:|Call Trace:|general protection fault'; then
	say "the kernel reported a problem; kernel log from there on:"
	dmesg | awk '/BUG:|Oops|WARNING:|Call Trace:|general protection fault/ { p = 1 } p'
fi
finish "$rc"
