#!/usr/bin/env bash
# cuda-env.sh: fetch the CUDA build inputs into .cache/cuda (no system install, no GPU) and
# run a command with them, so `make build-cuda`, `make vet-cuda` and `make kernels` work on
# any Debian 12 machine, CI included.
#
#   scripts/cuda-env.sh headers          # CUDA headers + stub libcuda.so (nvidia-cuda-dev)
#   scripts/cuda-env.sh nvcc             # nvcc, cicc, ptxas (nvidia-cuda-toolkit) + headers
#   scripts/cuda-env.sh kernels          # kernels/*.cu → kernels/*.ptx, checked with ptxas
#   scripts/cuda-env.sh CMD ARGS...      # run CMD with CGO_CFLAGS/CGO_LDFLAGS pointing there
#
# Recipe (docs/architecture.md §12): the CUDA packages are in Debian's non-free
# component, which the system sources leave off. A private APT configuration under
# .cache/cuda/apt copies the system's deb822 sources with every component enabled, so the
# system's own files are never edited; `apt-get download` fetches the .debs and `dpkg-deb -x`
# unpacks them into .cache/cuda/root. Only headers and stubs are kept from nvidia-cuda-dev
# (14 MB of 774). The binary links against the stub libcuda.so (soname libcuda.so.1, provided
# by the driver on a GPU machine); cuBLAS is not linked at all (dlopen at run time).
set -euo pipefail

ROOT_DIR="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${CUDA_CACHE_DIR:-$ROOT_DIR/.cache/cuda}"
APTDIR="$CACHE/apt"
R="$CACHE/root"
DEBS="$CACHE/debs"
NVCC_DIR="$R/usr/lib/nvidia-cuda-toolkit/bin"
KERNELS="$ROOT_DIR/trainerproc/engine/cuda/kernels"
# compute_80 PTX: Ampere and every later GPU's driver JITs it (Hopper included).
PTX_ARCH="${PTX_ARCH:-compute_80}"

log() { echo "cuda-env: $*" >&2; }

apt_setup() {
  [ -f "$APTDIR/apt.conf" ] && [ -n "$(ls -A "$APTDIR/lists" 2>/dev/null | grep -v partial || true)" ] && return 0
  mkdir -p "$APTDIR/parts" "$APTDIR/lists/partial" "$APTDIR/archives/partial"
  local src
  src=$(ls /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1 || true)
  if [ -z "$src" ]; then
    log "no deb822 sources in /etc/apt/sources.list.d; this recipe expects Debian 12"
    exit 1
  fi
  sed 's/^Components:.*/Components: main contrib non-free non-free-firmware/' "$src" >"$APTDIR/parts/nonfree.sources"
  cat >"$APTDIR/apt.conf" <<CONF
Dir::Etc::SourceList "/dev/null";
Dir::Etc::SourceParts "$APTDIR/parts";
Dir::State::Lists "$APTDIR/lists";
Dir::Cache::pkgcache "$APTDIR/pkgcache.bin";
Dir::Cache::srcpkgcache "$APTDIR/srcpkgcache.bin";
Dir::Cache::Archives "$APTDIR/archives";
APT::Sandbox::User "root";
CONF
  log "apt-get update (private non-free configuration)"
  APT_CONFIG="$APTDIR/apt.conf" apt-get -qq update >&2
}

download() { # download PKG... into $DEBS unless already there
  mkdir -p "$DEBS"
  local need=()
  for p in "$@"; do
    ls "$DEBS/${p}_"*.deb >/dev/null 2>&1 || need+=("$p")
  done
  [ ${#need[@]} -eq 0 ] && return 0
  apt_setup
  log "apt-get download ${need[*]}"
  (cd "$DEBS" && APT_CONFIG="$APTDIR/apt.conf" apt-get -qq download "${need[@]}" >&2)
}

headers() {
  [ -f "$R/.headers-ok" ] && return 0
  local t0=$SECONDS
  download nvidia-cuda-dev
  mkdir -p "$R"
  log "extracting headers and stubs from nvidia-cuda-dev"
  dpkg-deb --fsys-tarfile "$DEBS"/nvidia-cuda-dev_*.deb | tar -x -C "$R" --wildcards \
    './usr/include/*' './usr/lib/x86_64-linux-gnu/stubs/libcuda.so' \
    './usr/lib/x86_64-linux-gnu/stubs/libcublas.so' './usr/lib/x86_64-linux-gnu/stubs/libcublasLt.so'
  rm -f "$DEBS"/nvidia-cuda-dev_*.deb # 774 MB; the 14 MB we need is unpacked
  touch "$R/.headers-ok"
  log "headers ready in $((SECONDS - t0)) s"
}

nvcc_setup() {
  headers
  [ -f "$R/.nvcc-ok" ] && return 0
  download nvidia-cuda-toolkit libnvvm4
  log "extracting nvcc, cicc, ptxas"
  dpkg-deb -x "$DEBS"/nvidia-cuda-toolkit_*.deb "$R"
  dpkg-deb -x "$DEBS"/libnvvm4_*.deb "$R"
  # Debian's nvcc.profile is a link to /etc/nvcc.profile with absolute paths; replace it with
  # one relative to nvcc's own directory so the unpacked tree works where it lies.
  rm -f "$NVCC_DIR/nvcc.profile"
  cat >"$NVCC_DIR/nvcc.profile" <<'PROFILE'
TOP = $(_HERE_)/../../../..
NVVMIR_LIBRARY_DIR = $(_HERE_)/../libdevice
PATH += $(_HERE_):$(TOP)/usr/bin:
INCLUDES += "-I$(TOP)/usr/include" $(_SPACE_)
LIBRARIES =+ $(_SPACE_) "-L$(TOP)/usr/lib/x86_64-linux-gnu/stubs"
PROFILE
  touch "$R/.nvcc-ok"
}

# host compiler for nvcc's preprocessing: nvcc 11.8 wants gcc ≤ 11; Debian 12 has 12, which
# works for device-only PTX with -allow-unsupported-compiler.
host_cxx() { command -v g++-11 || command -v g++ || { log "no g++ found"; exit 1; }; }

kernels() {
  nvcc_setup
  local cxx
  cxx=$(host_cxx)
  local nvcc="$NVCC_DIR/nvcc" ptxas="$R/usr/bin/ptxas"
  for cu in "$KERNELS"/*.cu; do
    local out="${cu%.cu}.ptx"
    log "nvcc $(basename "$cu") → $(basename "$out") ($PTX_ARCH)"
    "$nvcc" --ptx -arch="$PTX_ARCH" -O3 -allow-unsupported-compiler -ccbin "$cxx" -I"$KERNELS" "$cu" -o "$out"
    # Assemble for Hopper too: catches PTX the driver would reject at load time and prints
    # register use and spills, which matter before any timing on Hopper.
    "$ptxas" -arch=sm_90 -v "$out" -o /dev/null 2>&1 | grep -E "error|spill stores, [1-9]" >&2 || true
  done
}

case "${1:-}" in
  headers) headers ;;
  nvcc) nvcc_setup; echo "$NVCC_DIR/nvcc" ;;
  kernels) kernels ;;
  "") sed -n '2,10p' "$0" >&2; exit 2 ;;
  *)
    headers
    export CGO_ENABLED=1
    export CGO_CFLAGS="-I$R/usr/include ${CGO_CFLAGS:-}"
    export CGO_LDFLAGS="-L$R/usr/lib/x86_64-linux-gnu/stubs ${CGO_LDFLAGS:-}"
    exec "$@"
    ;;
esac
