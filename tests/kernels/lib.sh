# shellcheck shell=bash
# Shared helpers of the kernel matrix harness (fetch.sh, vm.sh, matrix.sh source this).
#
# Cache layout, per series (5.10, 6.1, 6.12), under build/kernels/SERIES/:
#   apt/               private apt state (sources.list, lists/, cache/): the host's apt
#                      configuration and package lists are never touched
#   *.deb              the linux-image package that was downloaded
#   package            "name=version" of that package
#   release            its kernel release (uname -r in the guest)
#   root/              the extracted package (root/lib/modules/RELEASE, with modules.dep
#                      from depmod so that modprobe works inside the guest)
#   vmlinuz, vmlinux   the kernel, and its uncompressed ELF image (for bpftool btf dump)
#   initramfs.cpio.gz  busybox + the modules needed to reach the 9p root + init.sh
#   initramfs.stamp    what the initramfs was built from (rebuilt when that changes)

KERNELS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$KERNELS_DIR/../.." && pwd)
CACHE_ROOT="$REPO_ROOT/build/kernels"
ALL_SERIES="5.10 6.1 6.12"

die() {
	echo "${0##*/}: $*" >&2
	exit 1
}

log() {
	echo "${0##*/}: $*" >&2
}

check_series() {
	case "$1" in
	5.10 | 6.1 | 6.12) ;;
	*) die "unknown kernel series '$1' (one of: $ALL_SERIES)" ;;
	esac
}

series_dir() {
	echo "$CACHE_ROOT/$1"
}

# ensure_pkgs CMD:PACKAGE ...: install the Debian packages whose command is missing.
# Nothing here may depend on something installed by hand, so the scripts do it themselves
# (as root; otherwise they name what is missing).
ensure_pkgs() {
	local pair cmd pkg missing=()
	for pair in "$@"; do
		cmd=${pair%%:*}
		pkg=${pair#*:}
		if ! command -v "$cmd" >/dev/null 2>&1 && ! [ -x "/usr/sbin/$cmd" ] && ! [ -x "/sbin/$cmd" ] &&
			! [[ " ${missing[*]} " == *" $pkg "* ]]; then
			missing+=("$pkg")
		fi
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	[ "$(id -u)" = 0 ] || die "missing packages: ${missing[*]} (run as root to install them)"
	log "installing: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	# quiet unless it fails (debconf chatters on stderr even with -qq)
	if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } \
		>/tmp/hoptrace-apt.$$.log 2>&1; then
		cat /tmp/hoptrace-apt.$$.log >&2
		rm -f /tmp/hoptrace-apt.$$.log
		die "apt-get install ${missing[*]} failed"
	fi
	rm -f /tmp/hoptrace-apt.$$.log
}

# The busybox binary for the initramfs must be static (the initramfs has no libc).
# busybox-static conflicts with the dynamic busybox package, so if the host has the
# dynamic one installed, fetch busybox-static's .deb into the cache instead of replacing it.
static_busybox() {
	local dir="$CACHE_ROOT/busybox-static"
	if ! dpkg-query -W -f='${Status}' busybox 2>/dev/null | grep -q 'ok installed'; then
		ensure_pkgs busybox:busybox-static
		echo /bin/busybox
		return
	fi
	if ! [ -x "$dir/bin/busybox" ]; then
		mkdir -p "$dir"
		(cd "$dir" && apt-get download -qq busybox-static >/dev/null && dpkg-deb -x busybox-static_*.deb .)
	fi
	echo "$dir/bin/busybox"
}
