#!/usr/bin/env bash
# wsvisor in hub mode on :8080 and this page, with Centrifugo's browser SDK from the
# build's node_modules, on :8000. Ctrl-C stops both (wsvisor drains first).
#   examples/hub/run.sh            then open http://127.0.0.1:8000/
#   curl -s -H "X-API-Key: $WSVISOR_API_KEY" -d '{"channel":"chat:lobby","data":{"text":"hi"}}' \
#        http://127.0.0.1:8080/api/publish
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
build="${BUILD_DIR:-$root/build}"
sdk="$build/node/node_modules/centrifuge/dist/centrifuge.js"
if [ ! -x "$build/wsvisor" ] || [ ! -f "$sdk" ]; then
  echo "run.sh: needs $build/wsvisor and the npm SDK the build installs: run 'make build' first" >&2
  exit 1
fi
export WSVISOR_API_KEY="${WSVISOR_API_KEY:-hub-demo-key}"
site="$(mktemp -d)"
cp "$root/examples/hub/index.html" "$sdk" "$site/"
config="$site/hub.toml"
cat > "$config" <<TOML
[app]
mode = "hub"
[server]
ws_path = "/connection/websocket"
[hub]
allow_anonymous = true
[[hub.namespaces]]
name = "chat"
presence = true
join_leave = true
history_size = 100
history_ttl = "300s"
force_recovery = true
allow_subscribe_for_client = true
allow_subscribe_for_anonymous = true
allow_presence_for_subscriber = true
allow_history_for_subscriber = true
TOML
/usr/bin/python3 -m http.server 8000 --bind 127.0.0.1 --directory "$site" >/dev/null 2>&1 &
page=$!
trap 'kill "$page" 2>/dev/null; rm -rf "$site"' EXIT
echo "page: http://127.0.0.1:8000/   API key: $WSVISOR_API_KEY"
"$build/wsvisor" --config "$config"
