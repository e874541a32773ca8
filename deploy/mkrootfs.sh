#!/bin/sh
# Assembles the container image's root file system from this host's files, pulling nothing:
#   deploy/mkrootfs.sh BINARY ROOTFS
# ROOTFS gets the agent at /usr/local/bin/hoptrace (stripped), exactly the shared libraries
# `ldd BINARY` names and the dynamic loader (at their paths on this host, symbolic links such
# as merged-/usr's /lib -> usr/lib kept), the CA bundle for OTLP over TLS, a one-line
# nsswitch.conf, and empty mount points. No shell, no package manager, no /etc/passwd: the
# agent runs as root (uid 0) and looks no user up.
#
# Name resolution (libcurl, for OTLP endpoints): glibc 2.34+ has the "files" and "dns" NSS
# services built into libc.so.6, so no libnss_*.so is needed; libcurl reads /etc/hosts and
# /etc/resolv.conf, which the container runtime mounts (kubelet writes both).
set -eu

[ $# -eq 2 ] || {
	echo "usage: $0 BINARY ROOTFS" >&2
	exit 2
}
binary=$1
root=$2
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt

[ -x "$binary" ] || {
	echo "$0: $binary: no such executable (build it first: make build/hoptrace)" >&2
	exit 1
}
[ -r "$CA_BUNDLE" ] || {
	echo "$0: $CA_BUNDLE missing (apt-get install ca-certificates)" >&2
	exit 1
}

# copy_path PATH: copies the host's file PATH into $root at the same path. Each symbolic link
# on the way (a directory such as /lib or the file itself) is recreated as the same link and
# followed, so the copy resolves inside the image exactly as the path does here.
copy_path() {
	local rest cur comp next target
	rest=${1#/}
	cur=""
	while [ -n "$rest" ]; do
		comp=${rest%%/*}
		if [ "$comp" = "$rest" ]; then rest=""; else rest=${rest#*/}; fi
		next="$cur/$comp"
		if [ -L "$next" ]; then
			target=$(readlink "$next")
			[ -L "$root$next" ] || ln -s "$target" "$root$next"
			case $target in
			/*) copy_path "$target${rest:+/$rest}" ;;
			*) copy_path "$cur/$target${rest:+/$rest}" ;;
			esac
			return
		elif [ -d "$next" ]; then
			mkdir -p "$root$next"
		else
			cp "$next" "$root$next"
		fi
		cur=$next
	done
}

# the paths ldd resolves: "libx.so.1 => /path (addr)" and the loader's "/path (addr)";
# the vDSO has no file
libraries() {
	ldd "$binary" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'
}

rm -rf "$root"
mkdir -p "$root"
libs=$(libraries)
[ -n "$libs" ] || {
	echo "$0: ldd names no library for $binary" >&2
	exit 1
}
for lib in $libs; do
	copy_path "$lib"
done
mkdir -p "$root/usr/local/bin" "$root/etc/ssl/certs"
cp "$binary" "$root/usr/local/bin/hoptrace"
strip --strip-debug "$root/usr/local/bin/hoptrace"
cp "$CA_BUNDLE" "$root$CA_BUNDLE"
# hosts from /etc/hosts, then DNS (glibc's own default puts DNS first)
echo "hosts: files dns" >"$root/etc/nsswitch.conf"
# mount points the runtime and the DaemonSet's volumes use; /tmp for libraries that want one
mkdir -p "$root/proc" "$root/sys" "$root/dev" "$root/tmp" "$root/run" "$root/var"
chmod 1777 "$root/tmp"
chmod -R go-w "$root"
chmod 1777 "$root/tmp"
