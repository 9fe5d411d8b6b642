#!/bin/sh
# toolkit.sh ROOT PART installs the parts of Debian's CUDA 11.8 toolkit
# (non-free) that lathe's CUDA build needs under ROOT, without installing
# the packages system-wide (their dependencies would pull in the NVIDIA
# driver libraries):
#
#   headers  cuda.h and the rest of /usr/include from nvidia-cuda-dev, and
#            the libcuda.so link stub: enough for `go build -tags cuda`
#            (cgo) and `go vet -tags cuda`.
#   nvcc     headers, plus nvcc, cicc and ptxas from nvidia-cuda-toolkit,
#            with an nvcc.profile pointing into ROOT: enough for `make ptx`
#            and the PTX check (ptxas assembles the PTX for sm_80/sm_90).
#
# It adds Debian's non-free component to apt's sources if missing
# (/etc/apt/sources.list.d/lathe-nonfree.sources), downloads the .debs
# with `apt-get download` and unpacks only what is needed. A part already
# present is left alone, so running it again costs nothing.
set -eu
root=${1:?usage: toolkit.sh ROOT headers|nvcc}
part=${2:?usage: toolkit.sh ROOT headers|nvcc}
inc=$root/usr/include/cuda.h
stub=$root/usr/lib/x86_64-linux-gnu/stubs/libcuda.so
nvcc=$root/usr/lib/nvidia-cuda-toolkit/bin/nvcc

have_headers() { [ -f "$inc" ] && [ -f "$stub" ]; }
have_nvcc() { have_headers && [ -x "$nvcc" ] && [ -f "$root/.lathe-nvcc-profile" ]; }

case $part in
headers) have_headers && exit 0 ;;
nvcc) have_nvcc && exit 0 ;;
*) echo "toolkit.sh: unknown part $part (want headers or nvcc)" >&2; exit 2 ;;
esac

candidate() { apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2}'; }
if [ -z "$(candidate nvidia-cuda-dev)" ] || [ "$(candidate nvidia-cuda-dev)" = "(none)" ]; then
	src=/etc/apt/sources.list.d/lathe-nonfree.sources
	if [ ! -f "$src" ]; then
		echo "toolkit.sh: adding Debian non-free to apt's sources ($src)"
		cat >"$src" <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: non-free
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
	fi
	# A full update: restricting it to one source list would make apt drop
	# the other lists.
	apt-get update -qq
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp"
pkgs=nvidia-cuda-dev
[ "$part" = nvcc ] && pkgs="$pkgs nvidia-cuda-toolkit"
echo "toolkit.sh: downloading $pkgs"
(cd "$tmp" && apt-get download -qq $pkgs 2>&1 | grep -v '^W: Download is performed unsandboxed' || true)
ls "$tmp"/nvidia-cuda-dev_*.deb >/dev/null
mkdir -p "$root"
if ! have_headers; then
	echo "toolkit.sh: unpacking headers and the libcuda stub into $root"
	dpkg-deb --fsys-tarfile "$tmp"/nvidia-cuda-dev_*.deb |
		tar -x -C "$root" ./usr/include ./usr/lib/x86_64-linux-gnu/stubs/libcuda.so
fi
if [ "$part" = nvcc ]; then
	echo "toolkit.sh: unpacking nvcc into $root"
	dpkg-deb -x "$tmp"/nvidia-cuda-toolkit_*.deb "$root"
	# Debian's profile (a link to /etc/nvcc.profile) names /usr paths;
	# this one names ROOT's.
	prof=$root/usr/lib/nvidia-cuda-toolkit/bin/nvcc.profile
	rm -f "$prof"
	cat >"$prof" <<'PROF'
TOP = $(_HERE_)/../../..
NVVMIR_LIBRARY_DIR = $(TOP)/lib/nvidia-cuda-toolkit/libdevice
PATH += $(_HERE_):$(TOP)/bin:
INCLUDES += "-I$(TOP)/include" $(_SPACE_)
LIBRARIES =+ $(_SPACE_) "-L$(TOP)/lib/x86_64-linux-gnu/stubs"
PROF
	touch "$root/.lathe-nvcc-profile"
fi
