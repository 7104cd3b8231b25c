#!/usr/bin/env bash
# Builds an arm64 (aarch64) sysroot for cross-compiling yedge with cgo
# (gocv needs OpenCV headers and libraries of the target architecture).
#
# Debian's libopencv-dev is not Multi-Arch: same across the board, so
# `apt-get install libopencv-dev:arm64` would remove the host's amd64
# libopencv-dev. Instead this script resolves the arm64 dependency closure
# of libopencv-dev:arm64, downloads the .debs with `apt-get download` and
# unpacks them with `dpkg -x` into a plain folder: nothing of arm64 is
# installed on the host. It also installs the cross compilers
# (gcc/g++-aarch64-linux-gnu) if missing and enables the arm64 architecture
# in dpkg (needed only so that apt knows the arm64 package lists).
#
# Usage: deploy/sysroot-arm64.sh [SYSROOT]   (default build/sysroot-arm64)
# Env:   DEBS=folder for the downloaded .debs (default build/debs-arm64)
# Idempotent: an up-to-date sysroot (same package list) is left alone;
# .debs already downloaded are reused. Needs root (or sudo) for apt.
set -euo pipefail
cd "$(dirname "$0")/.."

SYSROOT=${1:-build/sysroot-arm64}
DEBS=${DEBS:-build/debs-arm64}
ROOTS=(libopencv-dev:arm64)

SUDO=()
if [ "$(id -u)" != 0 ]; then SUDO=(sudo); fi
export DEBIAN_FRONTEND=noninteractive

log() { echo "sysroot-arm64: $*" >&2; }

# 1. arm64 package lists.
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
	log "enabling the arm64 architecture in dpkg"
	"${SUDO[@]}" dpkg --add-architecture arm64
	"${SUDO[@]}" apt-get update -qq
fi
if ! apt-cache show --no-all-versions libopencv-dev:arm64 >/dev/null 2>&1; then
	"${SUDO[@]}" apt-get update -qq
fi

# 2. Cross compilers and pkg-config on the host.
missing=()
for p in gcc-aarch64-linux-gnu g++-aarch64-linux-gnu pkg-config; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	log "installing ${missing[*]}"
	"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# 3. The arm64 closure (architecture-independent packages such as fonts and
# data are not needed for linking and are left out).
mkdir -p "$DEBS" "$(dirname "$SYSROOT")"
mapfile -t pkgs < <(apt-cache depends --recurse --no-recommends --no-suggests \
	--no-conflicts --no-breaks --no-replaces --no-enhances "${ROOTS[@]}" |
	grep -E '^[a-z0-9][a-z0-9.+-]*:arm64$' | sort -u)
# The .deb file names (NAME_VERSION_arm64.deb, ':' in versions as %3a).
# The first line versions the layout of this script's output.
want=$(
	echo "layout 3"
	apt-get download --print-uris "${pkgs[@]}" | awk '{print $2}' | sort
)
stamp="$SYSROOT/.complete"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
	log "$SYSROOT is up to date ($(grep -c "\.deb$" <<<"$want") packages)"
	exit 0
fi

# 4. Download what is missing, pinned to the listed versions (apt checks
# each file against the hashes of the signed package lists).
need=()
while read -r file; do
	[[ $file == *.deb ]] || continue
	[ -f "$DEBS/$file" ] && continue
	name=${file%%_*}
	version=$(cut -d_ -f2 <<<"$file")
	need+=("$name:arm64=${version//%3a/:}")
done <<<"$want"
if [ ${#need[@]} -gt 0 ]; then
	log "downloading ${#need[@]} arm64 packages into $DEBS"
	(cd "$DEBS" && apt-get -o APT::Sandbox::User=root download -qq "${need[@]}")
fi

# 5. Unpack into a fresh folder, then swap it in.
tmp="$SYSROOT.tmp"
rm -rf "$tmp"
mkdir -p "$tmp"
log "unpacking $(grep -c "\.deb$" <<<"$want") packages into $SYSROOT"
# DEBIAN/shlibs and DEBIAN/symbols: every package's own files, one after
# the other (both formats allow many libraries in one file). With the
# sysroot given as a package build tree (dpkg-shlibdeps -S, as
# deploy/debian/rules does for an arm64 build), dpkg-shlibdeps finds the
# arm64 libraries here and computes the .deb's Depends from them.
mkdir -p "$tmp/DEBIAN"
: >"$tmp/DEBIAN/shlibs"
: >"$tmp/DEBIAN/symbols"
ctl=$(mktemp -d)
while read -r file; do
	[[ $file == *.deb ]] || continue
	dpkg -x "$DEBS/$file" "$tmp"
	rm -rf "${ctl:?}"/*
	dpkg-deb -e "$DEBS/$file" "$ctl"
	for f in shlibs symbols; do
		if [ -f "$ctl/$f" ]; then cat "$ctl/$f" >>"$tmp/DEBIAN/$f"; fi
	done
done <<<"$want"
rm -rf "$ctl"

# Absolute symlinks (e.g. libfoo.so -> /lib/aarch64-linux-gnu/libfoo.so.1)
# would point into the host; make them relative inside the sysroot.
abs=$(cd "$tmp" && pwd)
find "$tmp" -type l -lname '/*' -print0 |
	while IFS= read -r -d '' l; do
		target=$(readlink "$l")
		ln -sfn "$(realpath -sm --relative-to="$(dirname "$l")" "$abs$target")" "$l"
	done

# Debian picks the BLAS and LAPACK implementations with update-alternatives
# in maintainer scripts, which dpkg -x does not run: point the generic
# names at the reference implementations for linking (at run time the
# device's own alternatives apply).
lib="$tmp/usr/lib/aarch64-linux-gnu"
for alt in blas/libblas.so.3 blas/libblas.so lapack/liblapack.so.3 lapack/liblapack.so; do
	if [ -e "$lib/$alt" ] && [ ! -e "$lib/${alt#*/}" ]; then
		ln -s "$alt" "$lib/${alt#*/}"
	fi
done

printf '%s\n' "$want" >"$tmp/.complete"
rm -rf "$SYSROOT"
mv "$tmp" "$SYSROOT"
log "done: $SYSROOT ($(du -sh "$SYSROOT" | cut -f1))"
