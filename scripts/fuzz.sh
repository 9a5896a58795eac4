#!/usr/bin/env bash
# Builds and runs Braid's fuzz targets (fuzz/, cargo-fuzz and libFuzzer).
#
#   scripts/fuzz.sh [--seconds N] [--jobs J] [--keep DIR] [--build-only] [TARGET...]
#
# Every target is built with the address sanitizer, debug assertions and
# overflow checks (`cargo fuzz build -O --debug-assertions`: `-O` alone
# turns both off), then run for N seconds (default 15) from its committed
# seed corpus, fuzz/corpus/<target>, copied to a scratch directory so that a
# run never grows the committed corpus (--keep DIR keeps the grown corpora
# in DIR/<target>). J targets run at once (default 1). With no TARGET, every
# target of fuzz/Cargo.toml runs. --build-only builds and stops.
#
# Exits non-zero if any target crashes, hangs (one input over 60 s), runs
# out of memory (2 GB) or fails an assertion, after printing the target and
# the input that did it (fuzz/artifacts/<target>/...). Reproduce with:
#   RUSTC_BOOTSTRAP=1 cargo fuzz run -O -a --fuzz-dir fuzz TARGET ARTIFACT
# Prints a table: runs executed, coverage (libFuzzer's cov: and ft: of its
# last stats line) and seconds per target.
#
# Needs a C++ compiler (libfuzzer-sys builds libFuzzer with it; clang is not
# needed) and cargo-fuzz, which this script installs when missing. Stable
# Rust is enough: RUSTC_BOOTSTRAP=1 lets it take cargo-fuzz's nightly flags.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=15
jobs=1
keep=""
build_only=0
targets=()
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) seconds=$2; shift 2 ;;
        --jobs) jobs=$2; shift 2 ;;
        --keep) keep=$2; shift 2 ;;
        --build-only) build_only=1; shift ;;
        -h|--help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "fuzz.sh: unknown option $1" >&2; exit 2 ;;
        *) targets+=("$1"); shift ;;
    esac
done
case "$seconds$jobs" in
    *[!0-9]*) echo "fuzz.sh: --seconds and --jobs take whole numbers" >&2; exit 2 ;;
esac
[ "$jobs" -ge 1 ] || jobs=1

# Every [[bin]] of fuzz/Cargo.toml.
all_targets=()
while read -r t; do all_targets+=("$t"); done < <(
    awk '/^\[\[bin\]\]/ { bin = 1; next } /^\[/ { bin = 0 }
         bin && /^name *=/ { gsub(/^name *= *"|".*$/, ""); print }' fuzz/Cargo.toml)
if [ ${#targets[@]} -eq 0 ]; then
    targets=("${all_targets[@]}")
fi
for t in "${targets[@]}"; do
    case " ${all_targets[*]} " in
        *" $t "*) ;;
        *) echo "fuzz.sh: no target $t in fuzz/Cargo.toml" >&2; exit 2 ;;
    esac
done

# What a fresh Debian machine lacks: a C++ compiler, cargo-fuzz.
if ! command -v c++ >/dev/null 2>&1; then
    echo "fuzz.sh: installing g++ (libfuzzer-sys compiles libFuzzer with it)" >&2
    SUDO=""
    if [ "$(id -u)" != 0 ]; then
        if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
            echo "fuzz.sh: no C++ compiler and this is not root; run: apt-get install g++" >&2
            exit 1
        fi
    fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq g++ >/dev/null
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

export RUSTC_BOOTSTRAP=1
build_flags=(-O --debug-assertions)
t0=$(date +%s)
if [ ${#targets[@]} -eq ${#all_targets[@]} ]; then
    cargo fuzz build --fuzz-dir fuzz "${build_flags[@]}"
else
    for t in "${targets[@]}"; do
        cargo fuzz build --fuzz-dir fuzz "${build_flags[@]}" "$t"
    done
fi
build_secs=$(( $(date +%s) - t0 ))
if [ "$build_only" = 1 ]; then
    echo "== fuzz: built ${#targets[@]} targets in $build_secs s"
    exit 0
fi
bin_dir=fuzz/target/x86_64-unknown-linux-gnu/release

# Options for some targets: the slow ones (a circuit built with real
# handshakes every run) would otherwise stay at libFuzzer's short early
# lengths for a whole short run.
extra_args() {
    case "$1" in
        core_circuit_inbound|core_relay_node) echo "-len_control=0" ;;
    esac
}

scratch=$(mktemp -d "${TMPDIR:-/tmp}/braid-fuzz.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
export ASAN_OPTIONS="detect_odr_violation=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"

# One target: copy its seeds, run it, leave its log and exit status in
# $scratch/<target>.{log,rc,secs}.
run_target() {
    local t=$1 corpus="$scratch/corpus/$1" start rc
    mkdir -p "$corpus" "fuzz/artifacts/$t"
    if [ -d "fuzz/corpus/$t" ]; then
        cp -R "fuzz/corpus/$t/." "$corpus/"
    fi
    start=$(date +%s)
    rc=0
    # shellcheck disable=SC2046 # extra_args is a list of words
    "$bin_dir/$t" -max_total_time="$seconds" -timeout=60 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="fuzz/artifacts/$t/" $(extra_args "$t") \
        "$corpus" >"$scratch/$t.log" 2>&1 || rc=$?
    echo $(( $(date +%s) - start )) >"$scratch/$t.secs"
    echo "$rc" >"$scratch/$t.rc"
    if [ -n "$keep" ]; then
        mkdir -p "$keep/$t"
        cp -R "$corpus/." "$keep/$t/"
    fi
    if [ "$rc" != 0 ]; then
        cp "$scratch/$t.log" "fuzz/artifacts/$t/fuzz.log"
        echo "== $t: FAILED (exit $rc); its log is fuzz/artifacts/$t/fuzz.log:"
        # From the first report line (a panic, a sanitizer's or libFuzzer's).
        awk '/panicked at|^==[0-9]+==|ALARM|^ERROR|^SUMMARY/ { on = 1 } on' \
            "$scratch/$t.log" | head -n 40
    else
        echo "== $t: ok"
    fi
}

echo "== fuzz: ${#targets[@]} targets, $seconds s each, $jobs at once (build took $build_secs s)"
t1=$(date +%s)
running=0
for t in "${targets[@]}"; do
    run_target "$t" &
    running=$((running + 1))
    if [ "$running" -ge "$jobs" ]; then
        wait -n || true
        running=$((running - 1))
    fi
done
wait || true
run_secs=$(( $(date +%s) - t1 ))

failed=()
printf '\n%-26s %10s %7s %8s %6s  %s\n' target runs cov ft seconds result
for t in "${targets[@]}"; do
    log="$scratch/$t.log"
    rc=$(cat "$scratch/$t.rc" 2>/dev/null || echo 1)
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    # The last stats line ("#N ... cov: C ft: F ...").
    stats=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -n 1 || true)
    cov=$(echo "$stats" | sed -nE 's/.* cov: ([0-9]+).*/\1/p')
    ft=$(echo "$stats" | sed -nE 's/.* ft: ([0-9]+).*/\1/p')
    if [ "$rc" = 0 ]; then
        result=ok
    else
        artifact=$(sed -nE 's/.*Test unit written to (.*)$/\1/p' "$log" | tail -n 1)
        kind=$(grep -oE 'ERROR: libFuzzer: [a-z-]+|ERROR: AddressSanitizer: [a-z-]+|panicked at' "$log" \
            | head -n 1 || true)
        result="FAILED: ${kind:-exit $rc}, input ${artifact:-(none written)}"
        failed+=("$t")
    fi
    printf '%-26s %10s %7s %8s %6s  %s\n' "$t" "${runs:--}" "${cov:--}" "${ft:--}" \
        "$(cat "$scratch/$t.secs" 2>/dev/null || echo -)" "$result"
done
echo "== fuzz: build $build_secs s, runs $run_secs s"
if [ ${#failed[@]} -gt 0 ]; then
    echo "== fuzz: ${#failed[@]} target(s) failed: ${failed[*]}" >&2
    exit 1
fi
