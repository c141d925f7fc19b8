#!/usr/bin/env bash
# Prepares this machine for bettertest's tests and demo, idempotently:
# a Docker engine that answers, the local base image (no registry is reachable,
# so the image is built from Debian packages with debootstrap), and Chromium for
# the UI's browser tests.
# Quick when everything is already in place.
set -euo pipefail

VM_IMAGE=/var/lib/bettertest/debian12-cloud.qcow2 # vmlab's tests boot it; vmlab/vmlab_test.go names it too
DOCKERD_LOG=/var/log/bettertest-dockerd.log

say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (it installs packages and starts dockerd): sudo $0"

need_pkgs=()
command -v dockerd >/dev/null || need_pkgs+=(docker.io)
command -v debootstrap >/dev/null || need_pkgs+=(debootstrap)
command -v python3 >/dev/null || need_pkgs+=(python3)
command -v chromium >/dev/null || need_pkgs+=(chromium) # the UI's browser tests (boss/browser_test.go)
command -v bwrap >/dev/null || need_pkgs+=(bubblewrap) # the boss runs every pipedef in a bubblewrap sandbox
if [ ${#need_pkgs[@]} -gt 0 ]; then
	say "installing ${need_pkgs[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

# start_notify NAME LOG CMD...: start a daemon that reports readiness through
# NOTIFY_SOCKET (the sd_notify protocol, as under systemd), and wait for its
# READY=1 or its exit, whichever comes first: an event, not a poll.
start_notify() {
	local name=$1 log=$2
	shift 2
	say "starting $name (log: $log)"
	python3 - "$name" "$log" "$@" <<'PY'
import os, select, socket, subprocess, sys, tempfile
name, log_path, cmd = sys.argv[1], sys.argv[2], sys.argv[3:]
sock_dir = tempfile.mkdtemp(prefix="bettertest-notify-")
sock_path = os.path.join(sock_dir, "notify")
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.bind(sock_path)
with open(log_path, "ab") as log:
    proc = subprocess.Popen(cmd, env={**os.environ, "NOTIFY_SOCKET": sock_path},
                            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
pidfd = os.pidfd_open(proc.pid)
ready = False
while not ready:
    readable, _, _ = select.select([sock, pidfd], [], [], 300)
    if not readable:
        sys.exit(f"setup: error: {name} did not become ready in 300 s; see {log_path}")
    if pidfd in readable:
        sys.exit(f"setup: error: {name} exited with code {proc.wait()}; see {log_path}")
    ready = b"READY=1" in sock.recv(4096).split(b"\n")
os.unlink(sock_path)
os.rmdir(sock_dir)
PY
}

is_systemd() { [ "$(ps -p 1 -o comm=)" = systemd ]; }

# Start dockerd when no engine answers.
if ! docker info >/dev/null 2>&1; then
	if is_systemd; then
		say "starting docker.service"
		systemctl start docker
	else
		# Networks of 256 addresses, 4,096 of them in the range of Docker's
		# own default pools, which make about 30 bigger ones: the engine of
		# Debian 12 (20.10) now and then keeps a removed container's
		# endpoint, and the network it was on cannot be removed until the
		# engine restarts (moby/moby#43286). A worker's network left that
		# way would otherwise soon leave no pool for the next worker the
		# tests start.
		start_notify dockerd "$DOCKERD_LOG" dockerd --default-address-pool base=172.16.0.0/12,size=24
	fi
	docker info >/dev/null || die "the Docker engine still does not answer; see $DOCKERD_LOG"
fi

# Run networks whose worker can never come back: its data dir is gone (a
# test's worker killed, or cut off from Docker, cannot remove its own), or
# it was made before workers labelled their data dir. Each one holds an
# address pool until it is removed. Networks in use are left alone.
stuck=0
while read -r net; do
	dir=$(docker network inspect --format '{{index .Labels "dev.bettertest.data-dir"}}' "$net")
	if [ -z "$dir" ] || [ ! -d "$dir" ]; then
		if ! docker network rm "$net" >/dev/null 2>&1 &&
			[ "$(docker network inspect --format '{{len .Containers}}' "$net")" = 0 ]; then
			stuck=$((stuck + 1))
		fi
	fi
done < <(docker network ls --quiet --filter label=dev.bettertest.worker)
if [ "$stuck" -gt 0 ]; then
	say "$stuck run networks of gone workers, with no container on them, could not be removed: the engine keeps an endpoint of a removed container (moby/moby#43286); restarting it frees them"
fi

# The base images: Debian minbase, imported as local images, one per Debian
# release that enrollment is tested on (11 bullseye, 12 bookworm, 13 trixie).
build_base() {
	local release=$1 image=bettertest/base:$1 mirror root
	docker image inspect "$image" >/dev/null 2>&1 && return
	# The mirror this machine's apt uses (deb822 or one-line format).
	mirror=$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security | head -n1 || true)
	[ -n "$mirror" ] || mirror=$(awk '$1 == "deb" && $0 !~ /security/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
	[ -n "$mirror" ] || die "found no Debian mirror in /etc/apt/sources.list*; add one, then run again"
	root=$(mktemp -d /var/tmp/bettertest-rootfs.XXXXXX)
	say "building $image with debootstrap from $mirror (about 30 s)"
	if ! debootstrap --variant=minbase "$release" "$root" "$mirror" >"$root.log" 2>&1; then
		rm -rf "$root"
		die "debootstrap of $release failed; see $root.log"
	fi
	rm -f "$root.log"
	tar -C "$root" -c . | docker import - "$image" >/dev/null
	rm -rf "$root"
	say "built $image"
}
for release in bookworm bullseye trixie; do
	build_base "$release"
done
say "ready: $(docker version --format 'Docker {{.Server.Version}} (API {{.Server.APIVersion}})'), base images bettertest/base:{bookworm,bullseye,trixie}"

# build_image IMAGE DIR WHAT [BUILD-ARG...]: docker build DIR as IMAGE when the
# tag is missing or the build context or arguments changed since (the image's
# label holds a hash of the context's files and the arguments).
build_image() {
	local image=$1 dir=$2 what=$3 hash log arg
	shift 3
	local args=()
	for arg in "$@"; do args+=(--build-arg "$arg"); done
	hash=$( (cd "$dir" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum; printf '%s\n' "$@") | sha256sum | cut -c1-16)
	if [ "$(docker image inspect -f '{{index .Config.Labels "dev.bettertest.context"}}' "$image" 2>/dev/null)" = "$hash" ]; then
		return
	fi
	say "building $image from $dir ($what)"
	log=$(mktemp /var/tmp/bettertest-image-build.XXXXXX)
	docker build --label "dev.bettertest.context=$hash" "${args[@]}" -t "$image" "$dir" >"$log" 2>&1 ||
		die "building $image failed; see $log"
	rm -f "$log"
	say "built $image"
}

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# internal/testhost: the images of fresh SSH test hosts, one per Debian release.
for release in bookworm bullseye trixie; do
	build_image "bettertest/testhost:$release" "$repo/testdata/testhost" "about 25 s" "RELEASE=$release"
done
# The example pipeline's compiler image.
build_image bettertest/cc:bookworm "$repo/images/cc" "about 40 s"

# --- vmlab's tests: libvirt and a Debian 12 cloud image built from Debian packages ---
need_pkgs=()
for tool in virsh:libvirt-clients libvirtd:libvirt-daemon-system virt-install:virtinst qemu-img:qemu-utils \
	qemu-system-x86_64:qemu-system-x86 genisoimage:genisoimage ssh:openssh-client shellcheck:shellcheck; do
	command -v "${tool%%:*}" >/dev/null || need_pkgs+=("${tool#*:}")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
	say "installing ${need_pkgs[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi
# libvirt wants /dev/kvm as udev leaves it (root:kvm 0660); otherwise it probes
# qemu again on every call, and each takes seconds.
if [ -e /dev/kvm ] && getent group kvm >/dev/null && [ "$(stat -c %G:%a /dev/kvm)" != kvm:660 ]; then
	chgrp kvm /dev/kvm && chmod 0660 /dev/kvm
fi
if ! virsh --connect qemu:///system version >/dev/null 2>&1; then
	if is_systemd; then
		say "starting libvirtd"
		systemctl start virtlogd libvirtd
	else
		pgrep -x virtlogd >/dev/null || start_notify virtlogd /var/log/bettertest-virtlogd.log virtlogd
		start_notify libvirtd /var/log/bettertest-libvirtd.log libvirtd
	fi
	virsh --connect qemu:///system version >/dev/null || die "libvirtd still does not answer; see /var/log/bettertest-libvirtd.log"
fi
bash "$(dirname "${BASH_SOURCE[0]}")/build-vm-image.sh" "$VM_IMAGE"
