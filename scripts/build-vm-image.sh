#!/usr/bin/env bash
# Builds a bootable Debian 12 (bookworm) cloud image, OUT.qcow2, from Debian
# packages only, for vmlab's tests: no registry or image download is reachable
# here, only Debian's apt mirror.
#
#   sudo scripts/build-vm-image.sh OUT.qcow2
#
# The image behaves like a distro cloud image: it boots by itself (BIOS, GRUB in
# the MBR) as a qemu/libvirt disk, with a serial console on ttyS0; cloud-init
# (NoCloud: a seed ISO labelled cidata) creates the users, makes the SSH host
# keys at first boot, grows the root partition to the disk and runs phone_home;
# systemd-networkd does DHCP on every Ethernet NIC, whatever its name.
#
# Quick when OUT is up to date: OUT.hash holds the hash of this script and of
# testdata/vmimage/, and the image is rebuilt only when they changed.
#
# How, and why this way: the root file system is built in a directory
# (debootstrap, then apt-get in a chroot), then written straight into the
# partition of a raw disk file by `mkfs.ext4 -d` at the partition's offset;
# GRUB's boot sector and core image are written into the disk file with dd. The
# disk is never mounted, so no loop or nbd device is needed (machines differ in
# those: this one has no nbd, and its loop devices show no partitions).
set -euo pipefail

SUITE=bookworm
DISK_SIZE_MIB=3072 # the virtual size; cloud-init grows the root partition to a larger disk
PART_START_SECTOR=2048 # 1 MiB: room for GRUB's core image after the MBR
# Installed with apt in the debootstrapped tree, without Recommends; those that
# matter are named (openssh-sftp-server: scp speaks SFTP; libpam-systemd: logins).
# The generic kernel, not Debian's smaller cloud kernel: that one has no AHCI
# driver, so it does not see the cidata seed on a q35 machine's SATA cdrom
# (virt-install's default).
PACKAGES=(
	linux-image-amd64 initramfs-tools systemd-sysv udev dbus libpam-systemd kmod
	systemd-resolved cloud-init cloud-guest-utils openssh-server openssh-sftp-server sudo
	e2fsprogs fdisk ca-certificates curl iproute2 iputils-ping procps less netbase
)

say() { printf 'vmimage: %s\n' "$*"; }
die() { printf 'vmimage: error: %s\n' "$*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: $0 OUT.qcow2"
[ "$(id -u)" = 0 ] || die "run as root (it installs packages and runs debootstrap): sudo $0 $1"

out=$(realpath -m "$1")
script=$(realpath "${BASH_SOURCE[0]}")
config_dir=$(dirname "$script")/../testdata/vmimage
config_dir=$(realpath "$config_dir")
[ -d "$config_dir/rootfs" ] || die "missing $config_dir/rootfs (the files copied into the image)"

inputs_hash=$(
	{
		sha256sum "$script" | cut -d' ' -f1
		cd "$config_dir" && find . -print0 | LC_ALL=C sort -z | xargs -0 stat -c '%n %a %F' && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
	} | sha256sum | cut -c1-16
)
if [ -f "$out" ] && [ "$(cat "$out.hash" 2>/dev/null)" = "$inputs_hash" ]; then
	say "$out is up to date"
	exit 0
fi

# Host tools.
need_pkgs=()
command -v debootstrap >/dev/null || need_pkgs+=(debootstrap)
command -v qemu-img >/dev/null || need_pkgs+=(qemu-utils)
command -v sfdisk >/dev/null || need_pkgs+=(fdisk)
command -v mkfs.ext4 >/dev/null || need_pkgs+=(e2fsprogs)
command -v grub-mkimage >/dev/null || need_pkgs+=(grub-common)
[ -f /usr/lib/grub/i386-pc/boot.img ] || need_pkgs+=(grub-pc-bin)
if [ ${#need_pkgs[@]} -gt 0 ]; then
	say "installing ${need_pkgs[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null 2>&1 ||
		die "apt-get install ${need_pkgs[*]} failed"
fi

# The mirrors this machine's apt uses (deb822 or one-line format).
mirror=$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security | head -n1 || true)
[ -n "$mirror" ] || mirror=$(awk '$1 == "deb" && $0 !~ /security/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
[ -n "$mirror" ] || die "found no Debian mirror in /etc/apt/sources.list*; add one, then run again"
security=$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep security | head -n1 || true)
[ -n "$security" ] || security=$(awk '$1 == "deb" && $0 ~ /security/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)

mkdir -p "$(dirname "$out")"
work=$(mktemp -d "$(dirname "$out")/.vmimage-build.XXXXXX")
log=$work/build.log
root=$work/root
# On any exit: unmount what debootstrap or this script left mounted in the tree
# (only when they failed half-way), then remove the work directory.
cleanup() {
	local m
	findmnt -rn -o TARGET | { grep -F "$root/" || true; } | sort -r | while read -r m; do umount -l "$m"; done
	rm -rf "$work"
}
trap cleanup EXIT
fail() {
	cat "$log" "$root/debootstrap/debootstrap.log" >"$out.build.log" 2>/dev/null || true
	tail -n 5 "$out.build.log" | sed 's/^/vmimage:   /' >&2
	die "$1; the whole log is in $out.build.log"
}

start=$SECONDS
if [ -f "$out" ]; then say "rebuilding $out: this script or testdata/vmimage changed"; else say "building $out"; fi
say "debootstrap $SUITE from $mirror"
debootstrap --variant=minbase "$SUITE" "$root" "$mirror" >"$log" 2>&1 || fail "debootstrap failed"

say "installing the kernel, cloud-init, openssh-server and the rest"
# The image's own files first, so that the initramfs has its modprobe.d.
cp -a "$config_dir/rootfs/." "$root/"
# Only /proc: neither the host's /dev nor /sys, whose nodes the packages'
# scripts would change (udev's sets /dev/kvm's group to the image's kvm group
# id). debootstrap made the few device nodes that apt and dpkg need.
mount -t proc proc "$root/proc"
# No service starts in the build tree; dpkg need not sync every file to disk.
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod +x "$root/usr/sbin/policy-rc.d"
echo force-unsafe-io >"$root/etc/dpkg/dpkg.cfg.d/build-unsafe-io"
{
	chroot "$root" apt-get update -q &&
		DEBIAN_FRONTEND=noninteractive chroot "$root" apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"
} >>"$log" 2>&1 || fail "apt-get install in the image failed"
rm -f "$root/usr/sbin/policy-rc.d" "$root/etc/dpkg/dpkg.cfg.d/build-unsafe-io"
umount "$root/proc"

say "configuring the image"
uuid=$(cat /proc/sys/kernel/random/uuid)
printf 'UUID=%s / ext4 errors=remount-ro 0 1\n' "$uuid" >"$root/etc/fstab"
echo localhost >"$root/etc/hostname"
printf '127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
rm -f "$root/etc/apt/sources.list"
{
	printf 'Types: deb\nURIs: %s\nSuites: %s %s-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
		"$mirror" "$SUITE" "$SUITE"
	[ -z "$security" ] ||
		printf '\nTypes: deb\nURIs: %s\nSuites: %s-security\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
			"$security" "$SUITE"
} >"$root/etc/apt/sources.list.d/debian.sources"
chroot "$root" systemctl enable systemd-networkd.service >>"$log" 2>&1 || fail "enabling systemd-networkd failed"
# Each VM makes its own machine id and SSH host keys at first boot.
: >"$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id" "$root"/etc/ssh/ssh_host_*
# A fresh VM's package lists would be stale anyway: run apt-get update first.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
	"$root"/run/* "$root"/tmp/*
if [ ! -e "$root/vmlinuz" ] || [ ! -e "$root/initrd.img" ]; then
	fail "the kernel or initramfs is missing from the image (/vmlinuz, /initrd.img)"
fi

# GRUB: the modules under /boot/grub/i386-pc, as grub-install puts them; a core
# image that finds them on the first partition; a menu that boots at once.
mkdir -p "$root/boot/grub"
cp -a /usr/lib/grub/i386-pc "$root/boot/grub/"
cat >"$root/boot/grub/grub.cfg" <<EOF
serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
set timeout=0
menuentry 'Debian GNU/Linux 12' {
	linux /vmlinuz root=UUID=$uuid ro console=tty0 console=ttyS0,115200n8
	initrd /initrd.img
}
EOF

say "writing the disk ($DISK_SIZE_MIB MiB)"
raw=$work/disk.raw
truncate -s "${DISK_SIZE_MIB}M" "$raw"
echo "start=$PART_START_SECTOR, type=83, bootable" | sfdisk -q "$raw" >>"$log" 2>&1 || fail "partitioning failed"
part_blocks=$(((DISK_SIZE_MIB * 1024 * 1024 - PART_START_SECTOR * 512) / 4096))
mkfs.ext4 -q -F -b 4096 -L root -U "$uuid" -E offset=$((PART_START_SECTOR * 512)) -d "$root" \
	"$raw" "$part_blocks" >>"$log" 2>&1 || fail "mkfs.ext4 failed"
grub-mkimage -O i386-pc -o "$work/core.img" -p '(hd0,msdos1)/boot/grub' biosdisk part_msdos ext2 >>"$log" 2>&1 ||
	fail "grub-mkimage failed"
[ "$(stat -c %s "$work/core.img")" -le $(((PART_START_SECTOR - 1) * 512)) ] || fail "GRUB's core image does not fit before the partition"
# boot.img's code goes into the MBR before the partition table; it loads the
# core image from sector 1, whose first sector lists the sectors that follow.
dd if=/usr/lib/grub/i386-pc/boot.img of="$raw" bs=440 count=1 conv=notrunc status=none
dd if="$work/core.img" of="$raw" bs=512 seek=1 conv=notrunc status=none

say "converting to qcow2"
qemu-img convert -f raw -O qcow2 "$raw" "$work/out.qcow2" >>"$log" 2>&1 || fail "qemu-img convert failed"
mv "$work/out.qcow2" "$out"
echo "$inputs_hash" >"$out.hash"
rm -f "$out.build.log"
say "built $out ($(du -h "$out" | cut -f1) on disk, ${DISK_SIZE_MIB} MiB virtual) in $((SECONDS - start)) s"
