#!/bin/sh
# hoptrace entry point for a fresh Debian 12 machine (run as root):
#   ./build.sh run [-- AGENT ARGS]   install what is missing, build, run the agent
#   ./build.sh test                  install what is missing, build, run every test
#   ./build.sh bench | all | lint    other make targets, same set-up
#   ./build.sh deb                   the Debian package: build/deb/hoptrace_VERSION_ARCH.deb
# It installs the Debian packages the build (and, for test/bench, the test suite) needs,
# then hands over to make. Nothing has to be installed by hand first.
set -eu
cd "$(dirname "$0")"

BUILD_PKGS="make gcc clang llvm libc6-dev libbpf-dev bpftool libelf-dev zlib1g-dev pkg-config
	libcmocka-dev protobuf-c-compiler libprotobuf-c-dev libcurl4-openssl-dev libmicrohttpd-dev
	libseccomp-dev libsqlite3-dev
	xxd"
# xxd: the web UI's files are built into the binary as C arrays (Makefile, ui/gen-assets.sh)
# The runtimes the correlation and capture tests run for real (issue 15): Go's server reads a
# byte ahead, mod_proxy_http writes a request in many segments. apache2-bin is the server
# without the apache2 package's system service, which would start on port 80. prometheus
# (promtool and the server, for the scrape test) enables its service on port 9090 where
# systemd runs; the tests start their own on a free port.
TEST_PKGS="python3 curl nginx-light apache2-utils wrk iproute2 procps openssl ca-certificates
	qemu-system-x86 cpio kmod xz-utils zstd
	golang-go default-jdk-headless python3-aiohttp ruby ruby-webrick php-cli haproxy apache2-bin
	prometheus"
# The Debian package's test (tests/integration/test_deb.py, issue 13): make deb builds with
# debhelper; debootstrap makes the fresh root it is installed into; systemd-analyze checks
# the installed unit.
TEST_PKGS="$TEST_PKGS debhelper debootstrap systemd"
# The container image test (issue 13, tests/integration/test_image.py): make image builds it
# with buildah (FROM scratch: nothing pulled); the test reads the DaemonSet with python3-yaml
# and runs the image's root file system with exactly its capabilities through capsh.
TEST_PKGS="$TEST_PKGS buildah python3-yaml libcap2-bin"
# The web UI's browser test (issue 14, tests/integration/test_ui.py): Debian's chromium,
# headless, driven through chromium-driver by python3-selenium.
TEST_PKGS="$TEST_PKGS chromium chromium-driver python3-selenium"
# `./build.sh deb`: make deb (dpkg-buildpackage with debhelper, dpkg-dev with it)
DEB_PKGS="debhelper"

missing=""
pkg_installed() {
	dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "ok installed"
}
want_pkg() {
	for p in "$@"; do
		pkg_installed "$p" || missing="$missing $p"
	done
}
# Commands may come from elsewhere than Debian (nodesource's node ships npm itself).
want_cmd() {
	command -v "$1" >/dev/null 2>&1 || missing="$missing $2"
}

target="${1:-all}"
[ $# -gt 0 ] && shift
[ "${1:-}" = "--" ] && shift

# shellcheck disable=SC2086
want_pkg $BUILD_PKGS
case "$target" in
test | bench | integration-test)
	# shellcheck disable=SC2086
	want_pkg $TEST_PKGS
	want_cmd node nodejs
	want_cmd npm npm
	# kubectl kustomize renders deploy/k8s (test_manifests.py). Debian's is kubernetes-client;
	# a kubectl from elsewhere conflicts with it, so it is installed only when none exists.
	want_cmd kubectl kubernetes-client
	;;
esac
if [ "$target" = deb ]; then
	# shellcheck disable=SC2086
	want_pkg $DEB_PKGS
fi

if [ -n "$missing" ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "build.sh: missing packages:$missing; run as root to install them" >&2
		exit 1
	fi
	echo "build.sh: installing:$missing"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# shellcheck disable=SC2086
	apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

jobs=$(nproc 2>/dev/null || echo 2)
case "$target" in
run)
	make -j"$jobs" build/hoptrace
	# The embedded default, to look at: the store, and its web UI on loopback. Arguments
	# given after -- replace this choice.
	[ $# -eq 0 ] && set -- --ui-listen 127.0.0.1:16686
	exec ./build/hoptrace "$@"
	;;
*)
	exec make -j"$jobs" "$target"
	;;
esac
