#!/usr/bin/env bash
# The OCI image of make dist (called by scripts/dist.sh): for each
# architecture, mmdebstrap installs the yedge .deb into a minimal Debian 12
# root (the Essential set, the .deb and what it depends on; no recommends,
# no docs but copyrights), then deploy/image (go-containerregistry) writes
# the roots as one OCI index with a manifest per architecture.
#
# Left out of the root: Mesa's DRI drivers (OpenCV's closure still pulls in
# libgl1-mesa-dri; only a GL context on a display loads them, and yedge
# opens none), with LLVM and Z3, which only those drivers link; and every
# doc but the copyrights, which dpkg's path-exclude misses for the packages
# mmdebstrap unpacks before it applies them. deploy/image's test checks
# that every library in the root still finds all it links.
#
# Usage: scripts/image.sh VERSION REVISION NAME DIST WORK ARCH...
# Writes DIST/yedge_VERSION_oci.tar (an OCI layout in a tar: podman load,
# ctr images import, k3s ctr images import), named NAME, and prints the
# reference with the index digest (also into WORK/image-ref).
set -euo pipefail
cd "$(dirname "$0")/.."
umask 022

version=$1 revision=$2 name=$3 dist=$4 work=$5
shift 5
: "${SOURCE_DATE_EPOCH:?}"

# The service user of the package, made before the package's postinst with
# the UID and GID the DaemonSet runs as (deploy/kubernetes: 65532), so the
# state and cache folders it chowns belong to that user.
UID_GID=65532
MIRRORS=(
	"deb http://deb.debian.org/debian bookworm main"
	"deb http://deb.debian.org/debian bookworm-updates main"
	"deb http://deb.debian.org/debian-security bookworm-security main"
)

# One root per architecture, made at the same time: the arm64 one runs its
# maintainer scripts under QEMU on one core, the amd64 one is mostly
# downloads and unpacking.
root() {
	local arch=$1
	local deb
	deb=$(realpath "$dist/yedge_${version}_$arch.deb")
	# shellcheck disable=SC2016 # the hooks' "$1" is the root, for mmdebstrap
	mmdebstrap --arch="$arch" --variant=essential --format=tar \
		--aptopt='APT::Install-Recommends "false"' \
		--dpkgopt='path-exclude=/usr/share/doc/*' \
		--dpkgopt='path-include=/usr/share/doc/*/copyright' \
		--dpkgopt='path-exclude=/usr/share/man/*' \
		--dpkgopt='path-exclude=/usr/share/info/*' \
		--dpkgopt='path-exclude=/usr/share/locale/*' \
		--dpkgopt='path-exclude=/usr/share/lintian/*' \
		--dpkgopt='path-exclude=/usr/lib/*/dri/*' \
		--dpkgopt='path-exclude=/usr/lib/*/libLLVM-15.so*' \
		--dpkgopt='path-exclude=/usr/lib/*/libz3.so*' \
		--essential-hook="groupadd --prefix \"\$1\" --system --gid $UID_GID yedge" \
		--essential-hook="useradd --prefix \"\$1\" --system --uid $UID_GID --gid $UID_GID --home-dir /var/lib/yedge --no-create-home --shell /usr/sbin/nologin --comment 'yedge inference daemon' yedge" \
		--hook-dir=/usr/share/mmdebstrap/hooks/file-mirror-automount \
		--include=ca-certificates \
		--include="$deb" \
		--customize-hook='rm -rf "$1"/var/log/apt "$1"/var/log/dpkg.log "$1"/var/log/alternatives.log "$1"/var/cache/debconf/*-old "$1"/var/lib/dpkg/*-old "$1"/var/cache/ldconfig/aux-cache' \
		--customize-hook='find "$1"/usr/share/doc -mindepth 2 ! -type d ! -regex "$1/usr/share/doc/[^/]*/copyright" -delete; find "$1"/usr/share/doc -mindepth 2 -depth -type d -empty -delete; rm -rf "$1"/usr/share/man "$1"/usr/share/info "$1"/usr/lib/*/dri "$1"/usr/lib/*/libLLVM-15.so* "$1"/usr/lib/*/libz3.so*' \
		bookworm "$work/rootfs-$arch.tar" "${MIRRORS[@]}" </dev/null >"$work/mmdebstrap-$arch.log" 2>&1
}

roots=()
pids=()
for arch in "$@"; do
	echo "image: $arch root (mmdebstrap; log $work/mmdebstrap-$arch.log)" >&2
	root "$arch" &
	pids+=("$!")
	roots+=("--rootfs=$arch=$work/rootfs-$arch.tar")
done
i=0
for arch in "$@"; do
	if ! wait "${pids[$i]}"; then
		tail -40 "$work/mmdebstrap-$arch.log" >&2
		echo "image: mmdebstrap for $arch failed" >&2
		exit 1
	fi
	i=$((i + 1))
done

(cd deploy/image && go build -trimpath -o "../../$work/mkimage" .)
rm -rf "$work/oci"
ref=$("$work/mkimage" "${roots[@]}" \
	--name="$name" --version="$version" --revision="$revision" \
	--created="$SOURCE_DATE_EPOCH" --uid="$UID_GID" --layout="$work/oci")
# The layout as one tar (the oci-archive that podman load and ctr images
# import read), with the file order, owners and times fixed.
tar --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner \
	--format=posix --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
	-C "$work/oci" -cf "$dist/yedge_${version}_oci.tar" .
echo "image: $ref" >&2
echo "$ref" >"$work/image-ref"
