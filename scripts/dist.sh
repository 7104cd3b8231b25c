#!/usr/bin/env bash
# make dist: the release files of one commit, for linux/amd64 and linux/arm64,
# into dist/ (git-ignored):
#
#   yedge_VERSION_amd64.deb, yedge_VERSION_arm64.deb   Debian 12 packages
#   yedge_VERSION_oci.tar                              OCI image (both arches)
#   yedge_VERSION_lintian.txt                          lintian's report
#   SHA256SUMS
#
# The packages are built by Debian's own tools (dpkg-buildpackage, debhelper;
# packaging in deploy/debian) from binaries built here: the amd64 binary by
# `make build`, the arm64 one by `make cross-arm64` against the arm64 sysroot
# (deploy/sysroot-arm64.sh). The image is the .deb installed into a minimal
# Debian 12 root by mmdebstrap, one per architecture, written as one OCI
# index by deploy/image (go-containerregistry).
#
# Reproducible: SOURCE_DATE_EPOCH is the commit's time, so two builds of one
# commit give byte-identical .debs. The version is deploy/debian/changelog's
# (VERSION below), or VERSION~gitYYYYMMDDhhmmss.HASH for a commit that is
# not tagged vVERSION. A tree with uncommitted changes is refused (it is not
# one commit) unless DIST_DIRTY=1.
#
# Env: DIST=dist (output folder), ARCHES="amd64 arm64", IMAGE=1 (0: no image),
#      IMAGE_REPO=docker.io/library/yedge: the image is IMAGE_REPO:X.Y.Z, the
#      changelog's version, which deploy/kubernetes names; the exact version
#      is its org.opencontainers.image.version label.
# Needs root (apt, mmdebstrap) and, for the arm64 image, qemu-user-static
# with binfmt_misc (make setup registers it).
set -euo pipefail
cd "$(dirname "$0")/.."
umask 022
export LC_ALL=C.UTF-8 TZ=UTC

DIST=${DIST:-dist}
ARCHES=${ARCHES:-amd64 arm64}
IMAGE=${IMAGE:-1}
IMAGE_REPO=${IMAGE_REPO:-docker.io/library/yedge}
WORK=build/dist

log() { echo "dist: $*" >&2; }
die() {
	echo "dist: $*" >&2
	exit 1
}

if [ -n "$(git status --porcelain --untracked-files=no)" ] && [ "${DIST_DIRTY:-0}" != 1 ]; then
	die "uncommitted changes: commit them (or DIST_DIRTY=1 for a trial build)"
fi
SOURCE_DATE_EPOCH=$(git log -1 --format=%ct)
export SOURCE_DATE_EPOCH
REVISION=$(git rev-parse --short=12 HEAD)
base=$(dpkg-parsechangelog -l deploy/debian/changelog -S Version)
if [ "$(git tag --points-at HEAD | grep -cx "v$base")" = 1 ]; then
	VERSION=$base
else
	VERSION="$base~git$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y%m%d%H%M%S).${REVISION:0:7}"
fi
log "yedge $VERSION (commit $REVISION, SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH)"

rm -rf "$WORK" "$DIST"
mkdir -p "$WORK" "$DIST"

# 1. Binaries. The Makefile's build and cross-arm64 targets, stamped with
# this version.
for arch in $ARCHES; do
	case $arch in
	amd64) make --no-print-directory build VERSION="$VERSION" REVISION="$REVISION" YEDGE_BIN="$WORK/amd64/yedge" ;;
	arm64) make --no-print-directory cross-arm64 VERSION="$VERSION" REVISION="$REVISION" YEDGE_BIN_ARM64="$WORK/arm64/yedge" ;;
	*) die "unknown architecture $arch (amd64, arm64)" ;;
	esac
done

# 2. Man pages, from the command tree (any build runs here: amd64).
make --no-print-directory build YEDGE_BIN="$WORK/host/yedge" VERSION="$VERSION" REVISION="$REVISION" >/dev/null
CACHE_DIRECTORY=/var/cache/yedge "$WORK/host/yedge" man "$WORK/man"

# 3. The .debs.
ortdir() { case $1 in amd64) echo third_party/onnxruntime/linux-x64 ;; arm64) echo third_party/onnxruntime/linux-arm64 ;; esac; }
for arch in $ARCHES; do
	src="$WORK/deb-$arch/yedge"
	mkdir -p "$src/stage/man"
	cp -r deploy/debian "$src/debian"
	cp deploy/yedge.service "$src/debian/yedge.service"
	{
		echo "yedge ($VERSION) unstable; urgency=medium"
		echo
		echo "  * Build of commit $REVISION."
		echo
		echo " -- $(dpkg-parsechangelog -l deploy/debian/changelog -S Maintainer)  $(date -u -R -d "@$SOURCE_DATE_EPOCH")"
		echo
		cat deploy/debian/changelog
	} >"$src/debian/changelog"
	install -m 0755 "$WORK/$arch/yedge" "$src/stage/yedge"
	lib="$(ortdir "$arch")/libonnxruntime.so.1"
	[ -f "$lib" ] || die "no $lib: run make setup"
	install -m 0644 "$lib" "$src/stage/libonnxruntime.so.1"
	install -m 0644 configs/yedge.yaml "$src/stage/yedge.yaml"
	install -m 0644 deploy/JETSON.md "$src/stage/JETSON.md"
	install -m 0644 "$WORK"/man/*.1 "$src/stage/man/"
	sysroot=""
	if [ "$arch" != "$(dpkg --print-architecture)" ]; then
		sysroot=$(realpath build/sysroot-arm64)
	fi
	log "building yedge_${VERSION}_$arch.deb"
	(cd "$src" && ARM64_SYSROOT="$sysroot" dpkg-buildpackage -b -a"$arch" -d -us -uc --no-sign >"../build.log" 2>&1) ||
		{ tail -40 "$WORK/deb-$arch/build.log"; die "dpkg-buildpackage for $arch failed (log: $WORK/deb-$arch/build.log)"; }
	cp "$WORK/deb-$arch/yedge_${VERSION}_$arch.deb" "$DIST/"
done

# 4. lintian, on every .deb: an error or a warning fails the build. Fix it,
# or override it in deploy/debian/yedge.lintian-overrides with a one-line
# reason above it (none is needed today).
command -v lintian >/dev/null || die "lintian missing: run make setup"
{
	report="$DIST/yedge_${VERSION}_lintian.txt"
	for deb in "$DIST"/*.deb; do
		echo "== lintian $(lintian --version | cut -d' ' -f2) on $(basename "$deb")"
		lintian --info --display-info --show-overrides "$deb" 2>&1 || true
	done >"$report"
	cat "$report" >&2
	if grep -q '^[EW]: ' "$report"; then
		die "lintian reports errors or warnings (above)"
	fi
}

# 5. The OCI image.
if [ "$IMAGE" = 1 ]; then
	# shellcheck disable=SC2086 # ARCHES is a list
	scripts/image.sh "$VERSION" "$REVISION" "$IMAGE_REPO:$base" "$DIST" "$WORK" $ARCHES
fi

(
	cd "$DIST"
	shopt -s nullglob
	sha256sum -- *.deb *.tar *.txt >SHA256SUMS
)
log "done: yedge $VERSION in $DIST"
(cd "$DIST" && ls -l && cat SHA256SUMS) >&2
if [ -f "$WORK/image-ref" ]; then log "image: $(cat "$WORK/image-ref")"; fi
