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
