#!/usr/bin/env bash
# The daemon end to end, as `make demo` runs it: start `methanemap serve` on
# its embedded NATS broker, queue a scene, print the detections as they
# arrive, write them to files, stop the daemon (SIGTERM) and check it exited 0.
#   scripts/demo-daemon.sh BIN SCENE_JSON OUT_DIR
set -euo pipefail
bin=$1 scene=$2 out=$3
mkdir -p "$out"
log=$out/serve.log
# any free ports: the daemon logs the ones it got
"$bin" serve --data "$out/data" --nats-listen 127.0.0.1:-1 --http 127.0.0.1:0 \
	--allow "$(dirname "$scene")" --out "$out" --format gpkg 2>"$log" &
serve=$!
watcher=
cleanup() {
	[ -n "$watcher" ] && kill "$watcher" 2>/dev/null || true
	kill "$serve" 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 1 600); do
	grep -q 'msg=serving' "$log" && break
	kill -0 "$serve" 2>/dev/null || { cat "$log" >&2; echo "serve exited" >&2; exit 1; }
	sleep 0.1
done
grep -q 'msg=serving' "$log" || { cat "$log" >&2; echo "serve did not become ready in 60 s" >&2; exit 1; }
url=$(sed -n 's/.*embedded NATS server.* url=\([^ ]*\).*/\1/p' "$log" | head -1)
http=$(sed -n 's/.*"HTTP listening" addr=\([^ ]*\).*/\1/p' "$log" | head -1)
echo "daemon up: NATS $url, HTTP http://$http (/healthz /readyz /metrics), log $log"
# the live stream: brief lines on the terminal, full GeoJSON lines to a file
"$bin" watch --nats "$url" --brief &
watcher=$!
"$bin" watch --nats "$url" >"$out/live.geojsonl" &
watchers="$watcher $!"
"$bin" enqueue --nats "$url" --wait --timeout 5m "$scene"
sleep 1 # let the watchers print the last features
kill $watchers 2>/dev/null || true
watcher=
kill -TERM "$serve"
if wait "$serve"; then echo "daemon stopped cleanly (exit 0)"; else echo "daemon exited $?" >&2; exit 1; fi
trap - EXIT
echo "live stream: $out/live.geojsonl ($(wc -l <"$out/live.geojsonl") detections)"
ls "$out"/*.gpkg
