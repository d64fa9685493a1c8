#!/usr/bin/env bash
# API conformance: runs schemathesis against a local keyward's OpenAPI document, checking that
# no request gets a 5xx and that every response matches its documented schema.
#
# Usage: scripts/conformance.sh [MAX_EXAMPLES]   (default 50 per operation)
# Installs schemathesis into .venv-conformance (needs network access to PyPI the first time),
# builds the debug binary, serves a fresh data directory on 127.0.0.1 and stops it afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

max_examples="${1:-50}"
venv=.venv-conformance
token="kwa_0badcafe_00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

if [ ! -x "$venv/bin/schemathesis" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet schemathesis
fi
cargo build --bin keyward

data_dir="$(mktemp -d)"
stdout="$data_dir.stdout"
stderr="$data_dir.stderr"
KEYWARD_BOOTSTRAP_ADMIN_TOKEN="$token" KEYWARD_SNAPSHOT_EVERY="" RUST_LOG=warn \
    target/debug/keyward serve --listen 127.0.0.1:0 --data-dir "$data_dir/site" \
    >"$stdout" 2>"$stderr" &
server=$!
stop_server() {
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    rm -rf "$data_dir" "$stdout" "$stderr"
}
trap stop_server EXIT

url=""
for _ in $(seq 1 100); do
    url="$(sed -n 's/^keyward listening on //p' "$stdout" | head -n 1)"
    [ -n "$url" ] && break
    sleep 0.1
done
if [ -z "$url" ]; then
    echo "keyward did not start:" >&2
    cat "$stderr" >&2
    exit 1
fi
echo "keyward listening on $url"

# Demoting the site would turn every later write into a documented 503 SITE_STANDBY, so the
# role changes are left out.
"$venv/bin/schemathesis" run "$url/v1/openapi.json" \
    --url "$url" \
    --exclude-path /v1/admin/demote \
    --exclude-path /v1/admin/promote \
    --header "Authorization: Bearer $token" \
    --checks not_a_server_error,response_schema_conformance \
    --max-examples "$max_examples"
