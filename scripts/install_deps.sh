#!/usr/bin/env bash
# Installs the Debian 12 packages attn needs, skipping those already present;
# safe to run again (it installs nothing when nothing is missing). Runs as
# root, or through sudo otherwise.
#
#   scripts/install_deps.sh              build, test and benchmark (x86-64)
#   scripts/install_deps.sh --sanitizers + GCC's ASan/UBSan/TSan run-times
#   scripts/install_deps.sh --aarch64    + the aarch64 cross compiler, qemu-user
#                                          and the arm64 multiarch -dev packages
#   scripts/install_deps.sh --fuzz       + clang-14 and its libFuzzer run-time
#   scripts/install_deps.sh --with-peers + the benchmarks' optional peers:
#                                          OpenBLAS, oneDNN, Debian's PyTorch, and
#                                          PyTorch 2, ONNX Runtime and OpenVINO from
#                                          PyPI (bench/peers/requirements.txt) in a
#                                          virtual environment, <build>/peers-venv
#                                          (<build>: $ATTN_BUILD_DIR, default build/)
#   scripts/install_deps.sh --ci         all of the above but the peers
# (scripts/test.sh passes the groups its legs need.)
set -euo pipefail

packages=(build-essential cmake pkg-config libhwy-dev libtbb-dev libgtest-dev libbenchmark-dev)
want_arm64=0
want_peers_venv=0
for arg in "$@"; do
  case "$arg" in
    --with-peers)
      packages+=(libopenblas-dev libdnnl-dev ocl-icd-opencl-dev python3-torch python3-venv)
      want_peers_venv=1
      ;;
    # GCC's sanitizer run-times (g++ normally brings them already).
    --sanitizers) packages+=(libasan8 libubsan1 libtsan2) ;;
    # Cross compiler and emulator, and Highway, oneTBB and GoogleTest for
    # arm64 as multiarch packages: they install beside the amd64 ones (all
    # are Multi-Arch: same; apt may first upgrade amd64 packages to the
    # archive's version, e.g. libudev1, which must match its arm64 twin).
    --aarch64) want_arm64=1 ;;
    --fuzz) packages+=(clang-14 libclang-rt-14-dev llvm-14) ;;
    --ci)
      packages+=(libasan8 libubsan1 libtsan2 clang-14 libclang-rt-14-dev llvm-14)
      want_arm64=1
      ;;
    *)
      echo "install_deps.sh: unknown option $arg" >&2
      exit 2
      ;;
  esac
done
if [[ $want_arm64 -eq 1 ]]; then
  packages+=(g++-aarch64-linux-gnu qemu-user libhwy-dev:arm64 libtbb-dev:arm64 libgtest-dev:arm64)
fi

sudo_cmd=()
[[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)

need_update=0
if [[ $want_arm64 -eq 1 ]] && ! dpkg --print-foreign-architectures | grep -qx arm64; then
  echo "attn: adding the arm64 architecture to dpkg (multiarch)"
  "${sudo_cmd[@]}" dpkg --add-architecture arm64
  need_update=1
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [[ ${#missing[@]} -gt 0 || $need_update -eq 1 ]]; then
  "${sudo_cmd[@]}" apt-get update -q
fi
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "attn: installing ${missing[*]}"
  # --no-remove: fail rather than let apt remove anything to make room.
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
    --no-install-recommends --no-remove "${missing[@]}"
fi

# The modern peers: a virtual environment made once per requirements file (its
# hash is kept in the environment). Without PyPI the benchmark runs without them.
if [[ $want_peers_venv -eq 1 ]]; then
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  build=${ATTN_BUILD_DIR:-$root/build}
  venv=$build/peers-venv
  requirements=$root/bench/peers/requirements.txt
  want=$(sha256sum < "$requirements" | cut -d' ' -f1)
  if [[ ! -f $venv/requirements.sha256 || $(cat "$venv/requirements.sha256") != "$want" ]]; then
    mkdir -p "$build"
    log=$build/peers-install.log
    echo "attn: installing PyTorch 2, ONNX Runtime and OpenVINO from PyPI into $venv" \
      "(about 5 GB, once; log: $log)"
    start=$SECONDS
    rm -rf "$venv"
    if /usr/bin/python3 -m venv "$venv" > "$log" 2>&1 &&
      "$venv/bin/pip" install --disable-pip-version-check --no-input --timeout 30 --retries 2 \
        -r "$requirements" >> "$log" 2>&1; then
      echo "$want" > "$venv/requirements.sha256"
      echo "attn: the modern peers were installed in $((SECONDS - start)) s"
    else
      rm -rf "$venv"
      echo "attn: PyPI could not be reached or the install failed (the end of $log:" \
        "$(tail -n 1 "$log")): the benchmark runs without PyTorch 2, ONNX Runtime and OpenVINO"
    fi
  fi
fi
