#!/usr/bin/env bash
# The TypeScript client proof (issue 14 §3): npm ci, openapi-typescript types from
# ../../openapi.yaml, `tsc --strict`, `redocly lint` (recommended rules: no error), then the
# phone-and-clinic scenario through openapi-fetch against a live `moodtrack serve` on a free
# 127.0.0.1 port with a throw-away instance folder. Every step is bounded; any failure exits
# non-zero. Needs Node >= 20.19 and the repository's .venv (MOODTRACK_BIN overrides).
set -euo pipefail
cd "$(dirname "$0")"
REPO=$(cd ../.. && pwd)
BIN=${MOODTRACK_BIN:-$REPO/.venv/bin/moodtrack}

echo "-- npm ci"
timeout 300 npm ci --no-audit --no-fund --loglevel=error
echo "-- openapi-typescript"
timeout 120 npx --no-install openapi-typescript "$REPO/openapi.yaml" -o schema.d.ts
echo "-- tsc --strict"
timeout 180 npx --no-install tsc --strict --noEmit -p .
echo "-- redocly lint (recommended)"
timeout 180 npx --no-install redocly lint --config redocly.yaml --format stylish "$REPO/openapi.yaml"

INSTANCE=$(mktemp -d /tmp/moodtrack-ts.XXXXXX)
SERVER_PID=""
stop() {
  if [ -n "$SERVER_PID" ]; then
    kill -TERM -- "-$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 20); do kill -0 -- "-$SERVER_PID" 2>/dev/null || break; sleep 0.5; done
    kill -KILL -- "-$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$INSTANCE"
}
trap stop EXIT

export MOODTRACK_INSTANCE_PATH=$INSTANCE MOODTRACK_REQUIRE_STAFF_2FA=true
PORT=$("$REPO/.venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export MOODTRACK_URL=http://127.0.0.1:$PORT MOODTRACK_OUTBOX=$INSTANCE/outbox
export OPS_EMAIL=ops@example.org OPS_PASSWORD='an operator passphrase 2026'
export DR_EMAIL=dr@example.org DR_PASSWORD='a clinic passphrase 2026'

echo "-- staff accounts (moodtrack users create)"
echo "$OPS_PASSWORD" | timeout 120 "$BIN" users create --email "$OPS_EMAIL" --role admin --password-stdin
echo "$DR_PASSWORD" | timeout 60 "$BIN" users create --email "$DR_EMAIL" --role clinician \
  --organisation 'Riverside Clinic' --password-stdin

echo "-- moodtrack serve on 127.0.0.1:$PORT"
setsid "$BIN" serve --host 127.0.0.1 --port "$PORT" >"$INSTANCE/serve.log" 2>&1 &
SERVER_PID=$!
up=""
for _ in $(seq 120); do
  if curl -fsS -o /dev/null "$MOODTRACK_URL/healthz" 2>/dev/null; then up=1; break; fi
  kill -0 "$SERVER_PID" 2>/dev/null || break
  sleep 0.5
done
[ -n "$up" ] || { echo "the server did not come up:" >&2; tail -n 40 "$INSTANCE/serve.log" >&2; exit 1; }

echo "-- scenario (openapi-fetch)"
if ! timeout 300 npx --no-install tsx scenario.ts; then
  echo "scenario failed; the server's log ends:" >&2
  tail -n 40 "$INSTANCE/serve.log" >&2
  exit 1
fi
