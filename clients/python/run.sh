#!/usr/bin/env bash
# Generates the Python client from openapi.yaml with openapi-python-client (failing on any
# warning) into clients/python/generated/ (not committed), installs it in a venv of its own, starts `moodtrack serve` on a free port with a
# fresh instance folder, runs scenario.py against it and stops the server. Bounded: the
# scenario by its own deadline and `timeout`, the whole by the caller's `timeout`.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
VENV=${PYCLIENT_VENV:-/tmp/moodtrack-pyclient-venv}
WORK=$(mktemp -d /tmp/moodtrack-pyclient.XXXXXX)
SERVER=""
cleanup() {
  if [ -n "$SERVER" ]; then kill -- "-$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

[ -x "$VENV/bin/openapi-python-client" ] || {
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q 'openapi-python-client==0.29.*' pyotp
}

echo "== generate (openapi-python-client $("$VENV/bin/openapi-python-client" --version | awk '{print $NF}'))"
"$VENV/bin/openapi-python-client" generate --path "$ROOT/openapi.yaml" --output-path "$ROOT/clients/python/generated" \
  --overwrite --meta setup --config "$ROOT/clients/python/generator.yaml" 2>&1 | tee "$WORK/generate.log"
if grep -qiE 'warning|error' "$WORK/generate.log"; then
  echo "openapi-python-client printed warnings: the contract must generate cleanly" >&2
  exit 1
fi
"$VENV/bin/pip" install -q --force-reinstall --no-deps "$ROOT/clients/python/generated"
# Every generated module imports (a PATCH body of two media types once failed on import).
"$VENV/bin/python" - <<'PY'
import importlib, pkgutil
import moodtrack_client
names = [m.name for m in pkgutil.walk_packages(moodtrack_client.__path__, "moodtrack_client.")]
for name in names:
    importlib.import_module(name)
print(f"{len(names)} generated modules import")
PY

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export MOODTRACK_INSTANCE_PATH="$WORK/instance"
mkdir -p "$MOODTRACK_INSTANCE_PATH"
echo "== serve on 127.0.0.1:$PORT (instance $MOODTRACK_INSTANCE_PATH)"
setsid "$ROOT/.venv/bin/moodtrack" serve --host 127.0.0.1 --port "$PORT" >"$WORK/server.log" 2>&1 &
SERVER=$!

echo "== scenario"
if ! timeout 240 "$VENV/bin/python" "$ROOT/clients/python/scenario.py" --base-url "http://127.0.0.1:$PORT" \
  --instance "$MOODTRACK_INSTANCE_PATH" --moodtrack "$ROOT/.venv/bin/moodtrack" --deadline 120; then
  echo "-- server log (last 40 lines)" >&2
  tail -40 "$WORK/server.log" >&2
  exit 1
fi
