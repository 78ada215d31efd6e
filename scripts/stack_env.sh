#!/usr/bin/env bash
# Prints the environment of a second (third, ...) local stack, so that several stacks run side by side on one
# machine without touching each other: its own data directory and ports for Kafka, PostgreSQL and Redis, and the
# application settings that point at them.
#
#   eval "$(bash scripts/stack_env.sh N)"   # N = 1, 2, ... (0 is the default stack: .stack/, 9092, 15432, 16379)
#   bash scripts/stack.sh up && .venv/bin/pytest tests/...
#
# Stack N uses Kafka 9092+10N (controller +1), PostgreSQL 15432+10N (its replica +1), Redis 16379+10N and
# STACK_DIR=.stack-N/; Kafka's jars are shared with the default stack's .stack/kafka/libs.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
n="${1:?usage: stack_env.sh N}"
[[ "$n" =~ ^[0-9]+$ ]] || { echo "stack_env.sh: N must be a number, got '$n'" >&2; exit 2; }
kafka=$((9092 + 10 * n))
pg=$((15432 + 10 * n))
redis=$((16379 + 10 * n))
dir="$ROOT/.stack"
[ "$n" -eq 0 ] || dir="$ROOT/.stack-$n"
cat <<EOV
export STACK_DIR='$dir'
export STACK_KAFKA_LIBS='$ROOT/.stack/kafka/libs'
export STACK_KAFKA_PORT=$kafka
export STACK_KAFKA_CONTROLLER_PORT=$((kafka + 1))
export STACK_PG_PORT=$pg
export STACK_PG_REPLICA_PORT=$((pg + 1))
export STACK_REDIS_PORT=$redis
export KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$kafka
export DATABASE_URL=postgres://crypto:crypto@127.0.0.1:$pg/crypto
export REDIS_URL=redis://127.0.0.1:$redis/0
export CELERY_BROKER_URL=redis://127.0.0.1:$redis/0
export CELERY_RESULT_BACKEND=redis://127.0.0.1:$redis/0
export CHANNEL_LAYER_URL=redis://127.0.0.1:$redis/0
export CACHE_URL=redis://127.0.0.1:$redis/0
EOV
