#!/usr/bin/env bash
# Times the subscriptions API under 10,000 connected subscribers: one hub (--subscriptions,
# memory-only history, raised limits as compare.py's Hub), 5,000 loadgen subscribers on /bench,
# 5,000 idle ones on /idle and 3 (curl) on /few; then GET of /few's list (50 times), of one of
# its subscriptions (50), of /idle's list (5) and of the whole list (5): median, min, max.
# With `redis`, a redis-server on a free port in a temp dir is the transport. All on 127.0.0.1;
# every process has a time limit and is stopped at the end.
#
#     cargo build --release -p sse-hub -p loadgen
#     tests/bench/subscriptions_api.sh target/release/sse-hub local
#     tests/bench/subscriptions_api.sh target/release/sse-hub redis
set -u
BIN=$1
MODE=${2:-local}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
LOADGEN=${LOADGEN:-$ROOT/target/release/loadgen}
KEY=bench-key-0123456789abcdef0123456789
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
DIR=$(mktemp -d /tmp/sse-hub-subscriptions-bench.XXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$DIR"; }
trap cleanup EXIT
ulimit -n 20000
TRANSPORT=local
if [ "$MODE" = redis ]; then
  RPORT=$(free_port)
  timeout 300 redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$DIR" >/dev/null 2>&1 &
  PIDS+=($!)
  until redis-cli -p "$RPORT" ping >/dev/null 2>&1; do sleep 0.1; done
  TRANSPORT=redis://127.0.0.1:$RPORT/0
fi
PORT=$(free_port)
RUST_LOG=warn timeout 300 "$BIN" --bind 127.0.0.1:$PORT --jwt-key $KEY --allow-anonymous --transport "$TRANSPORT" \
  --data-dir none --tick-interval 0 --max-subscribers 30000 --max-subscribers-per-ip 30000 --subscribe-rate 0 \
  --publish-rate 1000000 --publish-burst 1000000 --history-size 30000 --workers 2 --subscriptions \
  >"$DIR/hub.log" 2>&1 &
PIDS+=($!)
until curl -s -o /dev/null --max-time 1 http://127.0.0.1:$PORT/healthz; do sleep 0.1; done
BASE=http://127.0.0.1:$PORT/.well-known/mercure
PUB=$("$BIN" --jwt-key $KEY token --legacy --publish '*')
SUB=$("$BIN" --jwt-key $KEY token --legacy --subscribe '*')
for _ in 1 2 3; do
  curl -s -N --max-time 200 "$BASE?topic=%2Ffew" >/dev/null &
  PIDS+=($!)
done
timeout 250 "$LOADGEN" --sub-url "$BASE?topic=%2Fbench" --pub-url "$BASE" --token "$PUB" --topic /bench \
  --subscribers 5000 --idle-subscribers 5000 --idle-url "$BASE?topic=%2Fidle" \
  --events 1 --rate 1 --settle-ms 90000 --max-duration 200s --json >"$DIR/loadgen.out" 2>&1 &
PIDS+=($!)
count() { python3 -c 'import json,sys;print(len(json.load(sys.stdin)["subscriptions"]))' 2>/dev/null; }
deadline=$((SECONDS + 120))
while :; do
  n=$(curl -s --max-time 5 http://127.0.0.1:$PORT/stats | python3 -c 'import json,sys;print(json.load(sys.stdin)["subscribers"])' 2>/dev/null || echo 0)
  [ "$n" -ge 10003 ] && break
  [ $SECONDS -ge $deadline ] && { echo "only $n subscribers connected"; exit 1; }
  sleep 1
done
# With Redis, the subscriptions are written by a task of their own: wait until they are listed.
until [ "$(curl -s --max-time 30 -H "Authorization: Bearer $SUB" "$BASE/subscriptions/%2Fidle" | count)" = 5000 ]; do
  [ $SECONDS -ge $deadline ] && { echo "/idle's subscriptions never all listed"; exit 1; }
  sleep 1
done
time_get() { # PATH RUNS
  for _ in $(seq "$2"); do
    curl -s -o /dev/null --max-time 30 -H "Authorization: Bearer $SUB" \
      -w '%{time_total} %{size_download} %{http_code}\n' "$BASE/subscriptions$1"
  done | sort -n | awk -v p="${1:-(all)}" '{t[NR]=$1; b=$2; c=$3}
    END {printf "%-14s median %6.2f ms  min %6.2f ms  max %6.2f ms  (%d runs, %d bytes, status %s)\n",
         p, t[int((NR+1)/2)]*1000, t[1]*1000, t[NR]*1000, NR, b, c}'
}
echo "$MODE: $n subscribers connected"
time_get /%2Ffew 50
ID=$(curl -s --max-time 30 -H "Authorization: Bearer $SUB" "$BASE/subscriptions/%2Ffew" |
  python3 -c 'import json,sys,urllib.parse;print(urllib.parse.quote(json.load(sys.stdin)["subscriptions"][0]["subscriber"],safe=""))')
echo "(one subscription below: /%2Ffew/$ID)"
time_get /%2Ffew/$ID 50
time_get /%2Fidle 5
time_get "" 5
