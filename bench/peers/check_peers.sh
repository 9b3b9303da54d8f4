#!/usr/bin/env bash
# The modern peers' own check: attn_peer_reference --toy writes small
# MultiHeadAttention and GroupedQueryAttention cases (prefill and decode), then
# each peer script (bench/peers/*_peer.py) loads them, checks its output
# against attn's and prints its rows, without timing. bench/run.sh runs it
# before the peers are timed; by hand:
#
#   bench/peers/check_peers.sh <build dir>
#
# Needs <build dir>/peers-venv (scripts/install_deps.sh --with-peers) and
# <build dir>/bench/attn_peer_reference; says so and exits 0 without them. The
# library's tests and CI never use the peers.
set -euo pipefail
build=$1
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
tool=$build/bench/attn_peer_reference venv=$build/peers-venv
if [[ ! -x $venv/bin/python || ! -x $tool ]]; then
  echo "check_peers.sh: no $venv or $tool: nothing to check"
  exit 0
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
