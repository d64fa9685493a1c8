#!/usr/bin/env bash
# Soak test: builds the release binary and runs examples/soak.rs, which starts a primary and a DR
# on 127.0.0.1, sends client traffic, ships snapshots and kills the DR at random, then checks
# that every acknowledged activation reached the DR. It stops by itself.
#
# Usage: scripts/soak.sh [SECONDS]   (default 600; SOAK_CLIENTS, SOAK_SNAPSHOT_EVERY and
# SOAK_RESTART_SECONDS are passed through, see examples/soak.rs)
set -euo pipefail
cd "$(dirname "$0")/.."

export SOAK_SECONDS="${1:-${SOAK_SECONDS:-600}}"
cargo build --release --bins --examples
exec target/release/examples/soak
