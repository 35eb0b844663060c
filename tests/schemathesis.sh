#!/usr/bin/env bash
# Property-based test of the HTTP API against its own OpenAPI document, from outside:
# schemathesis generates requests from /api/v1/openapi.json and checks that the server
# never answers 5xx, answers only what the document says (status, content type, body
# schema), refuses what the document refuses, and accepts what it admits.
#
#   tests/schemathesis.sh            # 25 examples per operation
#   ST_MAX_EXAMPLES=100 ST_SEED=1 tests/schemathesis.sh
#
# Installs schemathesis into target/st-venv, builds the debug server, runs it on free
# ports with a temporary SQLite database and the development admin (whose API key the
# requests carry), and stops it after.
# Exits non-zero when schemathesis found failures. Settings: tests/schemathesis.toml
# and tests/schemathesis_hooks.py.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
ST_VERSION=${ST_VERSION:-4.32.5}
VENV=$ROOT/target/st-venv

if ! "$VENV/bin/st" --version 2>/dev/null | grep -q "$ST_VERSION"; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet "schemathesis==$ST_VERSION"
fi

cargo build --quiet --bin killkrill

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
HTTP_PORT=$(free_port)
GRPC_PORT=$(free_port)
WORK=$(mktemp -d)
SERVER_PID=
cleanup() {
    if [[ -n $SERVER_PID ]]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

DATABASE_URL="sqlite:///$WORK/st.db" FLASK_PORT=$HTTP_PORT GRPC_PORT=$GRPC_PORT \
    "$ROOT/target/debug/killkrill" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
BASE=http://127.0.0.1:$HTTP_PORT
for _ in $(seq 1 100); do
    curl -sf "$BASE/livez" >/dev/null && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.log"; exit 1; }
    sleep 0.2
done

json_field() { python3 -c "import json, sys; print(json.load(sys.stdin)[\"$1\"])"; }
TOKEN=$(curl -sf -X POST "$BASE/api/v1/auth/login" -H 'content-type: application/json' \
    -d '{"username":"admin","password":"admin123"}' | json_field access_token)
# A source for the ingest operations to write to (see tests/schemathesis.toml).
KK_ST_SOURCE_ID=$(curl -sf -X POST "$BASE/api/v1/sources" -H "authorization: Bearer $TOKEN" \
    -H 'content-type: application/json' -d '{"name":"schemathesis","type":"http"}' | json_field id)
export KK_ST_SOURCE_ID
# Users for the operations on /api/v1/users/{id}: one to read and update, one to delete
# (see tests/schemathesis.toml).
new_user() {
    curl -sf -X POST "$BASE/api/v1/users" -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \
        -d "{\"username\":\"$1\",\"email\":\"$1@example.test\",\"password\":\"st-password-1\"}" | json_field id
}
KK_ST_USER_ID=$(new_user st-user)
KK_ST_DELETED_USER_ID=$(new_user st-deleted)
export KK_ST_USER_ID KK_ST_DELETED_USER_ID
# The run authenticates with an API key of the admin: changing the admin's password (which
# PUT /api/v1/users/{id} may do) revokes its tokens, not its keys.
API_KEY=$(curl -sf -X POST "$BASE/api/v1/auth/api-keys" -H "authorization: Bearer $TOKEN" \
    -H 'content-type: application/json' -d '{"name":"schemathesis"}' | json_field key)

status=0
PYTHONPATH=$ROOT/tests SCHEMATHESIS_HOOKS=schemathesis_hooks "$VENV/bin/st" --config-file "$ROOT/tests/schemathesis.toml" run "$BASE/api/v1/openapi.json" \
    -H "X-API-Key: $API_KEY" \
    --max-examples "${ST_MAX_EXAMPLES:-25}" ${ST_SEED:+--seed "$ST_SEED"} \
    --workers "${ST_WORKERS:-2}" "$@" || status=$?
if ((status != 0)); then
    cp "$WORK/server.log" "$ROOT/target/schemathesis-server.log"
    echo "schemathesis failed ($status); the server's log is in target/schemathesis-server.log" >&2
fi
exit "$status"
