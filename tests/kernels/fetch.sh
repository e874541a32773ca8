#!/bin/bash
# SPDX-License-Identifier: BSD-2-Clause
# tests/kernels/fetch.sh [--update] SERIES     (SERIES: 5.10, 6.1 or 6.12)
#
# Downloads the newest Debian amd64 kernel of a series and prepares it for vm.sh:
#   5.10 = Debian 11 (bullseye, + bullseye-security when reachable)
#   6.1  = Debian 12 (bookworm + bookworm-security)
#   6.12 = bookworm-backports (Debian 13's kernel line)
# These are the kernels production hosts actually run; the development machine's own
# kernel is much newer, so BPF code that loads here may not load there.
#
# Why like this:
# - apt-get download with a private sources list and private Dir::State::Lists /
#   Dir::Cache: the host's apt configuration and package lists stay untouched.
# - The concrete package (linux-image-6.1.0-NN-amd64) is resolved from the highest
#   version available in those suites, because the ABI number moves with every update.
# - vmlinux, the uncompressed ELF (the xz (5.10, 6.1) or zstd (6.12) stream inside
#   vmlinuz), is kept: the kernel's BTF can be read without booting it
#   (bpftool btf dump file build/kernels/6.1/vmlinux), and vm.sh boots it directly.
# - The initramfs holds a static busybox, the kernel's own modules needed to reach the
#   host's root over virtio-9p (in dependency order, from modinfo -F depends; 6.12 ships
#   .ko.xz, which busybox insmod cannot load, so they are decompressed), and init.sh.
#
# Everything is cached in build/kernels/SERIES/ (see lib.sh); a second run does no network
# access unless --update is given (then the newest package is resolved again).
set -euo pipefail
# shellcheck source=tests/kernels/lib.sh
. "$(dirname "$0")/lib.sh"

DEBIAN_KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

# Modules the initramfs needs to mount the host root (virtio-9p) under an overlay, plus
# virtio-rng so that getrandom() does not stall early in the guest. Their dependencies are
# found with modinfo; any of them may be built in, then there is no .ko and it is skipped.
INITRAMFS_MODULES="virtio_pci 9pnet_virtio 9p overlay virtio_rng"
# Used only when modinfo cannot answer (the order measured on 6.1, see kernel-facts.md).
FALLBACK_MODULE_ORDER="virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci
	netfs fscache 9pnet 9pnet_virtio 9p overlay rng-core virtio-rng"

usage() {
	echo "usage: $0 [--update] SERIES   (SERIES: $ALL_SERIES)" >&2
	exit 2
}

# suites SERIES: "required" and "optional" lines of "URI SUITE" for the series.
# bullseye is LTS; should it move to archive.debian.org, that is the fallback mirror.
suites() {
	case "$1" in
	5.10)
		echo "required http://deb.debian.org/debian bullseye|http://archive.debian.org/debian bullseye"
		echo "optional http://deb.debian.org/debian-security bullseye-security"
		;;
	6.1)
		echo "required http://deb.debian.org/debian bookworm"
		echo "optional http://deb.debian.org/debian-security bookworm-security"
		;;
	6.12)
		echo "required http://deb.debian.org/debian bookworm-backports|http://archive.debian.org/debian bookworm-backports"
		;;
	esac
}

# apt_opts APT: the options that keep every piece of apt state under APT.
apt_opts() {
	local apt=$1
	echo "-o Dir::Etc::SourceList=$apt/sources.list -o Dir::Etc::SourceParts=/dev/null"
	echo "-o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts=/dev/null"
	echo "-o Dir::State::Lists=$apt/lists -o Dir::Cache=$apt/cache"
	echo "-o APT::Architectures::=amd64 -o Acquire::Languages=none -o APT::Sandbox::User=root"
}

# write_sources APT SERIES WITH_OPTIONAL MIRROR_INDEX: the private sources.list.
write_sources() {
	local apt=$1 series=$2 with_optional=$3 idx=$4 kind alts entry
	: >"$apt/sources.list"
	while read -r kind alts; do
		[ "$kind" = optional ] && [ "$with_optional" = 0 ] && continue
		IFS='|' read -r -a entry <<<"$alts"
		[ "$kind" = required ] && [ "$idx" -lt ${#entry[@]} ] && alts=${entry[$idx]}
		[ "$kind" = optional ] && alts=${entry[0]}
		# shellcheck disable=SC2086 # "URI SUITE"
		set -- $alts
		echo "deb [arch=amd64 signed-by=$DEBIAN_KEYRING] $1 $2 main" >>"$apt/sources.list"
	done < <(suites "$series")
}

# apt_update APT SERIES: refresh the private lists, dropping the optional suite (and then
# trying the fallback mirror) when a suite is not reachable.
apt_update() {
	local apt=$1 series=$2 idx with_optional
	# shellcheck disable=SC2046
	for idx in 0 1; do
		for with_optional in 1 0; do
			write_sources "$apt" "$series" "$with_optional" "$idx"
			if apt-get $(apt_opts "$apt") -qq update >"$apt/update.log" 2>&1 &&
				! grep -qE '^E: |^W: (Failed to fetch|Some index files)' "$apt/update.log"; then
				log "$series: apt lists from $(awk '{print $4 " " $5}' "$apt/sources.list" | paste -sd, | sed 's/,/, /g')"
				return 0
			fi
		done
	done
	cat "$apt/update.log" >&2
	die "$series: cannot reach the Debian archive"
}

# newest_image APT SERIES: "package version" of the newest plain amd64 image of the series
# (not -unsigned, -dbg, -cloud-, -rt-).
newest_image() {
	local apt=$1 series=$2 re name ver best="" bestver=""
	re="^linux-image-${series//./\\.}\\.[0-9]+(-[0-9]+|\\+[a-z0-9]+)-amd64\$"
	# shellcheck disable=SC2046
	while read -r name; do
		while read -r ver; do
			if [ -z "$bestver" ] || dpkg --compare-versions "$ver" gt "$bestver"; then
				best=$name
				bestver=$ver
			fi
		done < <(apt-cache $(apt_opts "$apt") madison "$name" | awk -F' *[|] *' '{print $2}')
	done < <(apt-cache $(apt_opts "$apt") pkgnames linux-image- | grep -E "$re" || true)
	[ -n "$best" ] || die "$series: no linux-image package of this series in $(cat "$apt/sources.list")"
	echo "$best $bestver"
}

# extract_vmlinux VMLINUZ OUT: the kernel ELF is a compressed stream inside the bzImage:
# xz on 5.10 and 6.1, zstd on 6.12 (gzip elsewhere). Try each magic until one decompresses
# to an ELF; the decompressors stop at (or complain about) the trailer after the stream.
extract_vmlinux() {
	local vmlinuz=$1 out=$2 kind magic off
	for kind in 'xz -dc --single-stream:\xfd7zXZ\x00' 'zstd -qdc:\x28\xb5\x2f\xfd' 'gzip -dc:\x1f\x8b\x08'; do
		magic=${kind#*:}
		# shellcheck disable=SC2013 # offsets, one a line
		for off in $(LC_ALL=C grep -obUaP "$magic" "$vmlinuz" | cut -d: -f1); do
			# shellcheck disable=SC2086
			(set +o pipefail; tail -c +$((off + 1)) "$vmlinuz" | ${kind%%:*} >"$out.tmp" 2>/dev/null) || true
			if [ "$(head -c 4 "$out.tmp" | od -An -tx1 | tr -d ' ')" = 7f454c46 ]; then
				mv "$out.tmp" "$out"
				return 0
			fi
		done
	done
	rm -f "$out.tmp"
	die "no compressed ELF found in $vmlinuz"
}

# download SERIES DIR: resolve, download and unpack the newest package of the series.
download() {
	local series=$1 dir=$2 apt="$2/apt" pkg ver deb rel
	mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial"
	apt_update "$apt" "$series"
	read -r pkg ver < <(newest_image "$apt" "$series")
	rel=${pkg#linux-image-}
	if [ -f "$dir/release" ] && [ "$(cat "$dir/package" 2>/dev/null)" = "$pkg=$ver" ]; then
		log "$series: $pkg $ver, already here"
		return 0
	fi
	log "$series: $pkg $ver"
	rm -f "$dir"/*.deb
	# shellcheck disable=SC2046
	(cd "$dir" && apt-get $(apt_opts "$apt") -qq download "$pkg=$ver" >/dev/null)
	deb=$(ls "$dir"/*.deb)

	rm -rf "$dir/root" "$dir/vmlinuz" "$dir/vmlinux" "$dir/release"
	dpkg-deb -x "$deb" "$dir/root"
	# merged-/usr packages put the modules in usr/lib/modules; depmod -b wants lib/modules
	if ! [ -e "$dir/root/lib" ] && [ -d "$dir/root/usr/lib/modules" ]; then
		ln -s usr/lib "$dir/root/lib"
	fi
	[ -d "$dir/root/lib/modules/$rel" ] || die "$deb has no lib/modules/$rel"
	# modules.dep is made by the package's postinst, not shipped: build it for modprobe
	depmod -b "$dir/root" "$rel"
	cp "$dir/root/boot/vmlinuz-$rel" "$dir/vmlinuz"
	extract_vmlinux "$dir/vmlinuz" "$dir/vmlinux"
	echo "$pkg=$ver" >"$dir/package"
	echo "$rel" >"$dir/release" # written last: its presence marks a complete cache
}

# --- initramfs -------------------------------------------------------------------------

declare -A MOD_FILE=() MOD_SEEN=() MOD_BUILTIN=()
MOD_ORDER=()

# index_modules MODDIR: module name (with _ for -) -> .ko file, and the built-in set.
index_modules() {
	local moddir=$1 f n
	while read -r f; do
		n=${f##*/}
		n=${n%%.ko*}
		MOD_FILE[${n//-/_}]=$f
	done < <(find "$moddir/kernel" -name '*.ko' -o -name '*.ko.xz' -o -name '*.ko.zst')
	if [ -f "$moddir/modules.builtin" ]; then
		while read -r f; do
			n=${f##*/}
			MOD_BUILTIN[${n%.ko}]=1
		done < <(tr - _ <"$moddir/modules.builtin")
	fi
}

# visit NAME: depth-first, so that every module comes after what it depends on.
visit() {
	local name=${1//-/_} dep deps
	[ -n "${MOD_SEEN[$name]:-}" ] && return 0
	MOD_SEEN[$name]=1
	if [ -z "${MOD_FILE[$name]:-}" ]; then
		[ -n "${MOD_BUILTIN[$name]:-}" ] || log "warning: module $name is neither a .ko nor built in"
		return 0
	fi
	deps=$(modinfo -F depends "${MOD_FILE[$name]}")
	for dep in ${deps//,/ }; do
		visit "$dep"
	done
	MOD_ORDER+=("$name")
}

# module_order MODDIR: the load order of INITRAMFS_MODULES and their dependencies.
module_order() {
	local moddir=$1 m
	index_modules "$moddir"
	if command -v modinfo >/dev/null 2>&1 || [ -x /sbin/modinfo ]; then
		PATH=$PATH:/sbin:/usr/sbin
		for m in $INITRAMFS_MODULES; do
			visit "$m"
		done
	else
		for m in $FALLBACK_MODULE_ORDER; do
			[ -n "${MOD_FILE[${m//-/_}]:-}" ] && MOD_ORDER+=("${m//-/_}")
		done
	fi
}

# initramfs_fresh DIR: newer than everything it is made from (checking the stamp means
# running modinfo, a second per boot; this keeps a cached vm.sh start instant)
initramfs_fresh() {
	local f img="$1/initramfs.cpio.gz"
	[ -f "$img" ] || return 1
	for f in "$KERNELS_DIR/init.sh" "$KERNELS_DIR/fetch.sh" "$KERNELS_DIR/lib.sh" "$1/release"; do
		[ "$img" -nt "$f" ] || return 1
	done
}

# build_initramfs DIR: busybox, the modules (uncompressed) in load order, init.sh.
build_initramfs() {
	local dir=$1 rel bb stage m f stamp
	rel=$(cat "$dir/release")
	bb=$(static_busybox)
	module_order "$dir/root/lib/modules/$rel"
	stamp=$(
		sha256sum "$KERNELS_DIR/init.sh" "$bb"
		for m in "${MOD_ORDER[@]}"; do echo "$m ${MOD_FILE[$m]}"; done
	)
	stamp=$(sha256sum <<<"$stamp" | cut -d' ' -f1)
	if [ -f "$dir/initramfs.cpio.gz" ] && [ "$(cat "$dir/initramfs.stamp" 2>/dev/null)" = "$stamp" ]; then
		touch "$dir/initramfs.cpio.gz" # still right: take the fast path next time
		return 0
	fi
	stage="$dir/initramfs.stage"
	rm -rf "$stage"
	mkdir -p "$stage"/{bin,dev,proc,sys,mnt/lower,mnt/rw,newroot,lib/modules,job}
	cp "$bb" "$stage/bin/busybox"
	cp "$KERNELS_DIR/init.sh" "$stage/init"
	chmod 0755 "$stage/init"
	# the kernel opens /dev/console for init before anything is mounted
	if [ "$(id -u)" = 0 ]; then
		mknod -m 0600 "$stage/dev/console" c 5 1
		mknod -m 0666 "$stage/dev/null" c 1 3
	fi
	for m in "${MOD_ORDER[@]}"; do
		f=${MOD_FILE[$m]}
		case "$f" in
		*.ko.xz) xz -dc "$f" >"$stage/lib/modules/$m.ko" ;;
		*.ko.zst) zstd -qdc "$f" >"$stage/lib/modules/$m.ko" ;;
		*) cp "$f" "$stage/lib/modules/$m.ko" ;;
		esac
		echo "$m" >>"$stage/lib/modules/load-order"
	done
	touch "$stage/lib/modules/load-order"
	echo "$rel" >"$stage/release"
	(cd "$stage" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet | gzip -1) >"$dir/initramfs.cpio.gz.tmp"
	mv "$dir/initramfs.cpio.gz.tmp" "$dir/initramfs.cpio.gz"
	rm -rf "$stage"
	echo "$stamp" >"$dir/initramfs.stamp"
	log "$(basename "$dir"): initramfs with modules: ${MOD_ORDER[*]:-(none, all built in)}"
}

main() {
	local update=0 series dir
	[ "${1:-}" = --update ] && update=1 && shift
	[ $# -eq 1 ] || usage
	series=$1
	check_series "$series"
	ensure_pkgs apt-get:apt dpkg-deb:dpkg xz:xz-utils zstd:zstd modinfo:kmod depmod:kmod cpio:cpio gzip:gzip
	dir=$(series_dir "$series")
	mkdir -p "$dir"
	# one fetch per series at a time (matrix runs and vm.sh calls may overlap)
	exec 9>"$dir/.lock"
	flock 9
	if [ "$update" = 1 ] || ! [ -f "$dir/release" ]; then
		download "$series" "$dir"
	fi
	initramfs_fresh "$dir" || build_initramfs "$dir"
}

main "$@"
