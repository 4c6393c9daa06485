#!/usr/bin/env bash
# `make demo`: validate every example saga, compile one, run one that succeeds and one that
# is compensated, and draw the compensated run. Everything it writes goes under .sagac/demo.
set -euo pipefail
cd "$(dirname "$0")/.."
SAGAC=.venv/bin/sagac
OUT=.sagac/demo
mkdir -p "$OUT"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "validate every saga in sagas/"
$SAGAC validate sagas/*.yaml

step "compile sagas/checkout_compensated.yaml (plan written to $OUT/checkout_compensated.plan.json)"
$SAGAC compile sagas/checkout_compensated.yaml > "$OUT/checkout_compensated.plan.json"
python3 -c "import json,sys; p=json.load(open(sys.argv[1])); print('plan', p['hash'][:19], 'nodes:', ', '.join(p['scopes'][0]['order']))" "$OUT/checkout_compensated.plan.json"

STORE="sqlite:///$OUT/sagac.db"
step "run sagas/checkout_compensated.yaml: every step succeeds"
$SAGAC run sagas/checkout_compensated.yaml --input @sagas/inputs/checkout_compensated.json --store "$STORE"

step "run it again with an out-of-stock item: the charge is refunded (exit 1 = compensated)"
set +e
$SAGAC run sagas/checkout_compensated.yaml --input @sagas/inputs/checkout_compensated.fail.json \
    --store "$STORE" --json > "$OUT/compensated.json"
code=$?
set -e
if [ "$code" -ne 1 ]; then echo "expected exit 1 (compensated), got $code" >&2; exit 1; fi
RUN_ID=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['run_id'])" "$OUT/compensated.json")
$SAGAC show "$RUN_ID" --store "$STORE"

step "draw the compensated run and write its report"
$SAGAC diagram --run "$RUN_ID" --store "$STORE" --format svg -o "$OUT/compensated.svg"
$SAGAC report "$RUN_ID" --store "$STORE" -o "$OUT/compensated.html"
echo "diagram: $OUT/compensated.svg"
echo "report:  $OUT/compensated.html (open it in a browser; it works offline)"
