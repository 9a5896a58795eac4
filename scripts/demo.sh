#!/usr/bin/env bash
# The main job: a private Tor network of C-tor relays on 127.0.0.1, a 20 MB
# download through a Conflux set, a per-leg report, the network stopped.
# Extra arguments go to `braid demo` (see `braid demo --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-deps.sh
cargo build --locked --release -p braid
exec ./target/release/braid demo "$@"
