#!/usr/bin/env bash
# The modern peers' own check (ctest peers.toy_check): attn_peer_reference --toy
# writes small MultiHeadAttention and GroupedQueryAttention cases (prefill and
# decode), then each peer script (bench/peers/*_peer.py) loads them, checks its
# output against attn's and prints its rows, without timing. Skipped (exit 77)
# when the peers' virtual environment is missing: CI never installs it
# (scripts/install_deps.sh --with-peers does).
#
#   tests/peers/check_peers.sh <attn_peer_reference> <source dir> <peers venv>
set -euo pipefail
tool=$1 root=$2 venv=$3
if [[ ! -x $venv/bin/python ]]; then
  echo "peers not installed ($venv missing; scripts/install_deps.sh --with-peers): skipped"
  exit 77
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$tool" "$dir" --toy > /dev/null
status=0
for peer in torch2 onnxruntime openvino; do
  log=$dir/$peer.log
  if ! "$venv/bin/python" "$root/bench/peers/${peer}_peer.py" --reference-dir "$dir" \
    --check-only --threads 1 > "$log" 2>&1; then
    echo "$peer: FAILED"
    cat "$log"
    status=1
    continue
  fi
  # Every reference kind must have been checked by some row of this peer.
  rows=$(grep -c '^check ' "$log" || true)
  echo "$peer: $rows rows checked against attn"
  grep '^check ' "$log"
  if [[ $rows -eq 0 ]]; then
    echo "$peer: no row was checked"
    status=1
  fi
done
exit $status
