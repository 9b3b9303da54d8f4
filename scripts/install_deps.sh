#!/usr/bin/env bash
# Installs the Debian 12 packages attn needs to build, test and benchmark,
# skipping those already present. Optional peers for the benchmarks
# (OpenBLAS, oneDNN, PyTorch) are installed with --with-peers.
set -euo pipefail

packages=(build-essential cmake pkg-config libhwy-dev libtbb-dev libgtest-dev libbenchmark-dev)
if [[ "${1:-}" == "--with-peers" ]]; then
  packages+=(libopenblas-dev libdnnl-dev ocl-icd-opencl-dev python3-torch)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi

echo "attn: installing ${missing[*]}"
sudo_cmd=()
[[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
"${sudo_cmd[@]}" apt-get update -q
DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends \
  "${missing[@]}"
