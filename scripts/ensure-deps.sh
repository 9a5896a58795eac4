#!/usr/bin/env bash
# Installs what Braid's tests and demo need on Debian when it is missing:
# Debian's tor package (0.4.9 or newer), and curl (the proxy's integration
# test downloads through it). Checks for a Rust toolchain.
set -euo pipefail

packages=()
if ! command -v tor >/dev/null 2>&1 || ! command -v tor-gencert >/dev/null 2>&1; then
    packages+=(tor)
fi
if ! command -v curl >/dev/null 2>&1; then
    packages+=(curl)
fi
if [ "${#packages[@]}" -gt 0 ]; then
    echo "braid: installing Debian's ${packages[*]}" >&2
    SUDO=""
    if [ "$(id -u)" != 0 ]; then
        if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
            echo "braid: ${packages[*]} missing and this is not root; run: apt-get install ${packages[*]}" >&2
            exit 1
        fi
    fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${packages[@]}" >/dev/null
fi
version=$(tor --version | head -1 | sed -E 's/^Tor version ([0-9.]+).*/\1/; s/\.$//')
case "$version" in
    0.[0-3].*|0.4.[0-8].*)
        echo "braid: tor $version is too old; 0.4.9 or newer is needed (Debian 12 has it in bookworm and bookworm-security)" >&2
        exit 1 ;;
esac
# The package's own system tor is not needed; on machines where it started,
# it uses only its own ports (9050), which Braid's networks avoid.

if ! command -v cargo >/dev/null 2>&1; then
    echo "braid: cargo not found; install Rust 1.92 or newer with rustup (https://rustup.rs)" >&2
    exit 1
fi
