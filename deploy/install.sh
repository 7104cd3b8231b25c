#!/usr/bin/env bash
# Installs a built yedge on a device (Jetson or x86_64 with an NVIDIA GPU)
# as a systemd service:
#
#   PREFIX/bin/yedge                         the binary
#   PREFIX/lib/yedge/libonnxruntime.so.1     onnxruntime (YEDGE_ORT_LIB), with
#                                            the libonnxruntime_providers_*.so
#                                            found next to --ort-lib
#   PREFIX/share/doc/yedge/JETSON.md         the device guide
#   /etc/yedge/yedge.yaml                    only if absent (never overwritten)
#   /etc/systemd/system/yedge.service        deploy/yedge.service
#
# then runs systemctl daemon-reload and enable --now (restart when an
# installed file changed while the service was running). Idempotent: run it
# again after a new build. Run from a checkout or an unpacked release that
# has this layout (bin/, deploy/, configs/).
#
# Usage: sudo deploy/install.sh [options]
#   --bin FILE        yedge binary (default: bin/yedge-linux-arm64 on
#                     aarch64 if present, else bin/yedge)
#   --ort-lib FILE    libonnxruntime.so.1 to install (default:
#                     third_party/onnxruntime/linux-{x64,arm64}/libonnxruntime.so.1;
#                     on Jetson pass the TensorRT-enabled build, see JETSON.md)
#   --config FILE     initial /etc/yedge/yedge.yaml (default configs/yedge.yaml)
#   --prefix DIR      install prefix (default /usr/local)
#   --no-start        install and enable, but do not start or restart
#   --destdir DIR     stage everything under DIR; no systemctl calls
#   -h, --help        this text
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")

prefix=/usr/local
bin=""
ort_lib=""
config="$top/configs/yedge.yaml"
start=1
destdir=""

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
die() {
	echo "install.sh: $*" >&2
	exit 1
}
need_arg() {
	if [ $# -lt 2 ] || [ -z "$2" ]; then die "$1 needs an argument"; fi
}

while [ $# -gt 0 ]; do
	case "$1" in
	--bin) need_arg "$@"; bin=$2; shift 2 ;;
	--bin=*) bin=${1#*=}; shift ;;
	--ort-lib) need_arg "$@"; ort_lib=$2; shift 2 ;;
	--ort-lib=*) ort_lib=${1#*=}; shift ;;
	--config) need_arg "$@"; config=$2; shift 2 ;;
	--config=*) config=${1#*=}; shift ;;
	--prefix) need_arg "$@"; prefix=$2; shift 2 ;;
	--prefix=*) prefix=${1#*=}; shift ;;
	--destdir) need_arg "$@"; destdir=$2; shift 2 ;;
	--destdir=*) destdir=${1#*=}; shift ;;
	--no-start) start=0; shift ;;
	-h | --help) usage; exit 0 ;;
	*) die "unknown option: $1 (see --help)" ;;
	esac
done

case "$prefix" in
/*) prefix=${prefix%/} ;;
*) die "--prefix must be an absolute path: $prefix" ;;
esac

case "$(uname -m)" in
aarch64 | arm64) arch=arm64 ;;
x86_64 | amd64) arch=x64 ;;
*) die "unsupported machine: $(uname -m)" ;;
esac
if [ -z "$bin" ]; then
	bin="$top/bin/yedge"
	if [ "$arch" = arm64 ] && [ -f "$top/bin/yedge-linux-arm64" ]; then
		bin="$top/bin/yedge-linux-arm64"
	fi
fi
[ -n "$ort_lib" ] || ort_lib="$top/third_party/onnxruntime/linux-$arch/libonnxruntime.so.1"

[ -f "$bin" ] || die "no yedge binary at $bin (make build, or --bin)"
[ -f "$ort_lib" ] || die "no onnxruntime library at $ort_lib (make setup, or --ort-lib)"
[ -f "$here/yedge.service" ] || die "missing $here/yedge.service"
if [ -z "$destdir" ] && [ "$(id -u)" != 0 ]; then
	die "run as root (sudo), or stage with --destdir"
fi

bindir="$prefix/bin"
libdir="$prefix/lib/yedge"
docdir="$prefix/share/doc/yedge"
unitdir=/etc/systemd/system
etcdir=/etc/yedge

changed=0
# put SRC DEST MODE: installs SRC at DESTDIR/DEST unless identical.
put() {
	local src=$1 dest=$destdir$2 mode=$3
	if [ -f "$dest" ] && cmp -s "$src" "$dest"; then
		echo "unchanged  $2"
		return 0
	fi
	install -D -m "$mode" "$src" "$dest"
	echo "installed  $2"
	changed=1
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

put "$bin" "$bindir/yedge" 0755
put "$ort_lib" "$libdir/libonnxruntime.so.1" 0644
# GPU builds keep the CUDA and TensorRT providers in separate libraries,
# which onnxruntime loads from the folder of libonnxruntime.
for p in "$(dirname "$ort_lib")"/libonnxruntime_providers_*.so; do
	[ -f "$p" ] || continue
	put "$p" "$libdir/$(basename "$p")" 0644
done
if [ -f "$here/JETSON.md" ]; then
	put "$here/JETSON.md" "$docdir/JETSON.md" 0644
fi

# The unit names the packaged /usr paths; point them at PREFIX. The binary
# finds libonnxruntime in PREFIX/lib/yedge, beside it.
sed -e "s#/usr/bin/yedge#$bindir/yedge#g" \
	-e "s#/usr/share/doc/yedge/#$docdir/#g" \
	"$here/yedge.service" >"$tmp/yedge.service"
unit_changed=0
before=$changed
put "$tmp/yedge.service" "$unitdir/yedge.service" 0644
[ "$changed" = "$before" ] || unit_changed=1

# The service user owns nothing in /etc, so the configuration must be
# world-readable (keep camera credentials in a drop-in with LoadCredential=
# or in a root-only file the daemon does not need).
if [ -f "$destdir$etcdir/yedge.yaml" ]; then
	echo "kept       $etcdir/yedge.yaml"
elif [ -f "$config" ]; then
	install -D -m 0644 "$config" "$destdir$etcdir/yedge.yaml"
	echo "installed  $etcdir/yedge.yaml (from $config)"
	changed=1
else
	die "no $etcdir/yedge.yaml yet and no config at $config (use --config)"
fi

if [ -n "$destdir" ]; then
	echo "staged under $destdir (no systemctl calls)"
	exit 0
fi

# The service user (User=yedge in the unit), as the .deb's postinst makes it.
if ! getent passwd yedge >/dev/null; then
	useradd --system --user-group --home-dir /var/lib/yedge --no-create-home \
		--shell /usr/sbin/nologin --comment "yedge inference daemon" yedge
	echo "created    system user yedge"
fi

if [ "$unit_changed" = 1 ]; then
	systemctl daemon-reload
fi
if [ "$start" = 0 ]; then
	systemctl enable yedge.service
	echo "enabled yedge.service (not started: --no-start)"
elif systemctl is-active --quiet yedge.service; then
	systemctl enable yedge.service
	if [ "$changed" = 1 ]; then
		systemctl restart yedge.service
		echo "restarted yedge.service"
	else
		echo "yedge.service already running and up to date"
	fi
else
	# Type=notify: this waits for READY=1, i.e. until models are loaded and
	# TensorRT engines built (minutes on a first start).
	systemctl enable --now yedge.service
	echo "started yedge.service"
fi
