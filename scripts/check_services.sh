#!/usr/bin/env bash
# Shows that the local stack's scripts are idempotent: `up` twice in a row, then `down` and `up`, each ending
# with all servers answering (PostgreSQL and its streaming replica, Redis, and Kafka answering a metadata request).
# Also repairs: a stale Kafka pid file and a half-formatted Kafka data dir. Run by `make services-check` (part of
# `make test`).
#
# It works on a stack of its own (scripts/stack_env.sh 9: other ports, .stack-9/), so it never restarts the servers of
# a running demo or of the test suite, and stops that stack at the end.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
eval "$(bash "$ROOT/scripts/stack_env.sh" "${CHECK_STACK_N:-9}")"
# With the streaming replica: `up` starts it (and waits until it streams), `status` counts it, `down` stops it.
export STACK_PG_REPLICA=1
trap 'bash "$ROOT/scripts/stack.sh" down 2>/dev/null || true' EXIT
STACK="$ROOT/scripts/stack.sh"
PY="$ROOT/.venv/bin/python"

answering() {
  bash "$STACK" status >/dev/null || { bash "$STACK" status; return 1; }
  "$PY" "$ROOT/manage.py" check_stack --timeout 10 >/dev/null
}

step() { printf '[services-check] %-45s' "$1"; }
ok() { echo "ok ($1 s)"; }

t=$SECONDS; step "up (1st)"; bash "$STACK" up 2>/dev/null; answering; ok $((SECONDS - t))
t=$SECONDS; step "up (2nd, already running)"; bash "$STACK" up 2>/dev/null; answering; ok $((SECONDS - t))
t=$SECONDS; step "down"; bash "$STACK" down 2>/dev/null
if bash "$STACK" status >/dev/null; then echo "still running after down"; exit 1; fi
ok $((SECONDS - t))
t=$SECONDS; step "up (after down)"; bash "$STACK" up 2>/dev/null; answering; ok $((SECONDS - t))

# A stale pid file (the process it names is gone) must not stop `up` from doing its job.
t=$SECONDS; step "up with a stale Kafka pid file"
bash "$STACK" down 2>/dev/null
mkdir -p "$STACK_DIR/kafka" && echo 999999 >"$STACK_DIR/kafka/kafka.pid"
bash "$STACK" up 2>/dev/null; answering; ok $((SECONDS - t))
echo "[services-check] all servers answering after every step"
