#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine for yedge: OpenCV (for gocv v0.31.0),
# the official onnxruntime build (from the onnxruntime-node npm tarball, into
# the git-ignored third_party/onnxruntime), Go modules, golangci-lint (into
# the git-ignored bin/tools), and bin/yedge.
# Idempotent: steps that are already done are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

ORT_VERSION=1.24.3
ORT_SHA256=aa1bb5fa261ea68de05dd53efbba210cd7adf2d2850f4c3a201054c74cc78040
ORT_DIR=third_party/onnxruntime

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi

# Debian packages: OpenCV 4.6 headers for gocv, pkg-config, and the tools
# the test suite drives (Prometheus for the daemon integration test,
# headless Chromium for the web view's browser test, serve/webui_test.go).
# Packaging (make dist, and the install tests of make test): Debian's
# packaging tools and lintian, mmdebstrap for Debian 12 roots, QEMU user
# emulation for the arm64 root, podman and containerd to load the image.
pkgs=(libopencv-dev pkg-config gcc g++ make curl ca-certificates prometheus systemd chromium
  dpkg-dev debhelper lintian mmdebstrap arch-test qemu-user-static podman containerd shellcheck)
# npm fetches the onnxruntime tarball; use the machine's Node.js when present.
command -v npm >/dev/null 2>&1 || pkgs+=(nodejs npm)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# onnxruntime: the official Linux build shipped inside onnxruntime-node.
if [ ! -f "$ORT_DIR/linux-x64/libonnxruntime.so.1" ] || [ ! -f "$ORT_DIR/linux-arm64/libonnxruntime.so.1" ]; then
  echo "setup: fetching onnxruntime $ORT_VERSION (npm onnxruntime-node@$ORT_VERSION)"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "onnxruntime-node@$ORT_VERSION" >/dev/null)
  tgz="$tmp/onnxruntime-node-$ORT_VERSION.tgz"
  echo "$ORT_SHA256  $tgz" | sha256sum -c --quiet
  for arch in x64 arm64; do
    tar -xzf "$tgz" -C "$tmp" "package/bin/napi-v6/linux/$arch/libonnxruntime.so.1"
    mkdir -p "$ORT_DIR/linux-$arch"
    mv "$tmp/package/bin/napi-v6/linux/$arch/libonnxruntime.so.1" "$ORT_DIR/linux-$arch/"
  done
  echo "$ORT_VERSION" > "$ORT_DIR/VERSION"
fi

# arm64 programs in an arm64 root (the install tests): the kernel's
# binfmt_misc runs them through qemu-aarch64, registered with the F flag
# (Debian's binfmt.d entry) so that it works inside a chroot. Needs root;
# where it cannot be registered, the tests fall back to qemu-aarch64-static -L.
binfmt=/proc/sys/fs/binfmt_misc
if [ "$(id -u)" = 0 ] && [ -f /usr/lib/binfmt.d/qemu-aarch64.conf ]; then
  mountpoint -q "$binfmt" || mount -t binfmt_misc binfmt_misc "$binfmt" 2>/dev/null || true
  if [ -w "$binfmt/register" ] && [ ! -e "$binfmt/qemu-aarch64" ]; then
    grep -v '^#' /usr/lib/binfmt.d/qemu-aarch64.conf >"$binfmt/register" || true
  fi
  if [ -e "$binfmt/qemu-aarch64" ]; then
    echo "setup: arm64 emulation: binfmt_misc ($(grep flags "$binfmt/qemu-aarch64"))"
  else
    echo "setup: arm64 emulation: no binfmt_misc here; the tests use qemu-aarch64-static -L"
  fi
fi

# The arm64 sysroot behind make cross-arm64 and make dist (about 430 arm64
# .debs unpacked into build/sysroot-arm64; nothing arm64 is installed).
make --no-print-directory cross-arm64-deps

echo "setup: downloading Go modules"
go mod download
# The Kubernetes manifest tests are a module of their own (k8s.io/api,
# kustomize, the Prometheus Operator's types stay out of yedge's module).
(cd deploy/kubernetes/manifesttest && go mod download)
(cd deploy/image && go mod download)

# golangci-lint for `make lint`: installed into the git-ignored bin/tools with
# its own module graph (go install pkg@version), so it is never a requirement
# of yedge's go.mod. About 2.5 min of compiling on 2 cores the first time.
LINT_VERSION=2.15.0
LINT_BIN=bin/tools/golangci-lint
if [ -x "$LINT_BIN" ] && "$LINT_BIN" version 2>/dev/null | grep -q "version $LINT_VERSION "; then
  echo "setup: golangci-lint $LINT_VERSION already in $LINT_BIN"
else
  echo "setup: installing golangci-lint v$LINT_VERSION into bin/tools"
  GOBIN="$(pwd)/bin/tools" go install "github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v$LINT_VERSION"
fi

echo "setup: building bin/yedge"
make build
echo "setup: done ($(bin/yedge version | head -1))"
