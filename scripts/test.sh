#!/usr/bin/env bash
# Runs every test of Braid: formatting, lints, unit and property tests, and
# the integration tests against a private network of real C-tor relays on
# 127.0.0.1 (which this script's ensure-deps step installs when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-deps.sh
echo "== tor: $(tor --version | head -1)"
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --locked --workspace --all-targets -- -D warnings
echo "== cargo doc (intra-doc links)"
RUSTDOCFLAGS="-D warnings" cargo doc --locked --workspace --no-deps --quiet
echo "== cargo test"
cargo test --locked --workspace -- --nocapture 2>&1 | tee target/test-output.txt
grep -E "^test result:" target/test-output.txt | awk '
    { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;?$/) p += $(i-1); if ($(i) ~ /^failed;?$/) f += $(i-1) } }
    END { printf "%d passed, %d failed\n", p, f }'
