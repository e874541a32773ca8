#!/bin/bash
# Assembles the container image's root file system from this host's files, pulling nothing:
#   deploy/mkrootfs.sh BINARY ROOTFS
# ROOTFS gets the agent at /usr/local/bin/hoptrace (stripped), exactly the shared libraries
# `ldd BINARY` names and the dynamic loader (at their paths on this host, symbolic links such
# as merged-/usr's /lib -> usr/lib kept), the CA bundle for OTLP over TLS, a one-line
# nsswitch.conf, and empty mount points. No shell, no package manager, no /etc/passwd: the
# agent runs as root (uid 0) and looks no user up.
# For each Debian package a library comes from: its copyright file (the licences the image
# must carry: LGPL libraries among them), and its dpkg status stanza in
# /var/lib/dpkg/status.d/PACKAGE (the layout of distroless images), so that image scanners
# can tell the packages and versions inside.
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
			[ -d "$root$next" ] || mkdir "$root$next"
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

# The names by which dpkg may know a library: with merged /usr, it knows each by one only.
candidates() {
	echo "$1" "$(readlink -f "$1")" "/usr$1"
}

# owners LIB...: the Debian package (name:arch) owning each library, or "NONE LIB". One
# dpkg-query call for all (each call reads every package's file list), one awk to match.
owners() {
	local lib
	{
		for lib in "$@"; do candidates "$lib"; done | xargs dpkg-query -S 2>/dev/null || true
		echo "--"
		for lib in "$@"; do candidates "$lib"; done
	} | awk '
		$0 == "--" { matching = 1; next }
		!matching { i = index($0, ": "); if (i) owner[substr($0, i + 2)] = substr($0, 1, i - 1); next }
		{ for (c = 1; c <= NF; c++) if ($c in owner) { print owner[$c]; next }; print "NONE " $1 }'
}

# add_package_records PKG...: each one's copyright file and dpkg status stanza (one
# dpkg-query call: stanzas are paragraphs, each written to its package's file)
add_package_records() {
	local pkg name
	mkdir -p "$root/var/lib/dpkg/status.d"
	for pkg in "$@"; do
		name=${pkg%%:*}
		mkdir -p "$root/usr/share/doc/$name"
		cp -L "/usr/share/doc/$name/copyright" "$root/usr/share/doc/$name/copyright"
	done
	dpkg-query -s "$@" | awk -v dir="$root/var/lib/dpkg/status.d" '
		BEGIN { RS = ""; ORS = "\n" }
		{ match($0, /^Package: [^\n]+/); f = dir "/" substr($0, 10, RLENGTH - 9); print > f; close(f) }'
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
packages=""
# shellcheck disable=SC2086
for pkg in $(owners $libs | sed 's/^NONE /NONE:/'); do
	case $pkg in
	NONE:*) echo "$0: warning: no Debian package owns ${pkg#NONE:}: no licence record" >&2 ;;
	*) packages="$packages $pkg" ;;
	esac
done
# the CA bundle is built from ca-certificates' files
# shellcheck disable=SC2046,SC2086
add_package_records $(echo $packages ca-certificates | tr ' ' '\n' | sort -u)
# hosts from /etc/hosts, then DNS (glibc's own default puts DNS first)
echo "hosts: files dns" >"$root/etc/nsswitch.conf"
# mount points the runtime and the DaemonSet's volumes use; /tmp for libraries that want one
mkdir -p "$root/proc" "$root/sys" "$root/dev" "$root/tmp" "$root/run" "$root/var"
chmod -R go-w "$root"
chmod 1777 "$root/tmp"
