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
#
#   eval "$(bash scripts/stack_env.sh N --tls)"   # a TLS-only stack N: data in .stack-N-tls/ (.stack-tls/ for 0)
#
# --tls: the same ports, but every server accepts TLS only (scripts/stack.sh makes a CA and server certificates in
# STACK_DIR/tls/): Kafka SASL_SSL with SCRAM-SHA-512, PostgreSQL ssl=on with hostssl lines only, Redis on a TLS port
# with a password. The passwords are generated once per stack into STACK_DIR/tls/secrets.env (mode 0600) and every
# client setting is printed with them (sslmode=verify-full, rediss://, SASL_SSL; docs/DEPLOYMENT.md).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
n="${1:?usage: stack_env.sh N [--tls]}"
[[ "$n" =~ ^[0-9]+$ ]] || { echo "stack_env.sh: N must be a number, got '$n'" >&2; exit 2; }
tls=0
case "${2:-}" in
  "") ;;
  --tls) tls=1 ;;
  *) echo "stack_env.sh: unknown option '$2' (usage: stack_env.sh N [--tls])" >&2; exit 2 ;;
esac
kafka=$((9092 + 10 * n))
pg=$((15432 + 10 * n))
redis=$((16379 + 10 * n))
dir="$ROOT/.stack"
[ "$n" -eq 0 ] || dir="$ROOT/.stack-$n"
[ "$tls" -eq 0 ] || dir="$dir-tls"
cat <<EOV
export STACK_DIR='$dir'
export STACK_TLS=$tls
export STACK_KAFKA_LIBS='$ROOT/.stack/kafka/libs'
export STACK_KAFKA_PORT=$kafka
export STACK_KAFKA_CONTROLLER_PORT=$((kafka + 1))
export STACK_PG_PORT=$pg
export STACK_PG_REPLICA_PORT=$((pg + 1))
export STACK_REDIS_PORT=$redis
export KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$kafka
EOV
if [ "$tls" -eq 0 ]; then
  for name in REDIS_URL CELERY_BROKER_URL CELERY_RESULT_BACKEND CHANNEL_LAYER_URL CACHE_URL; do
    echo "export $name=redis://127.0.0.1:$redis/0"
  done
  cat <<EOV
export DATABASE_URL=postgres://crypto:crypto@127.0.0.1:$pg/crypto
unset KAFKA_SECURITY_PROTOCOL KAFKA_SASL_MECHANISM KAFKA_SASL_USERNAME KAFKA_SASL_PASSWORD KAFKA_SSL_CAFILE
EOV
  exit 0
fi
secrets="$dir/tls/secrets.env"
if [ ! -s "$secrets" ]; then
  # Hex: no character needs encoding in a URL or quoting in a properties file.
  mkdir -p "$dir/tls"
  chmod 700 "$dir/tls"
  (
    umask 077
    for name in DB_PASSWORD REDIS_PASSWORD KAFKA_PASSWORD KAFKA_BROKER_PASSWORD; do
      echo "$name=$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')"
    done >"$secrets.new"
  )
  mv "$secrets.new" "$secrets"
fi
# shellcheck source=/dev/null
. "$secrets"
ca="$dir/tls/ca.pem"
for name in REDIS_URL CELERY_BROKER_URL CELERY_RESULT_BACKEND CHANNEL_LAYER_URL CACHE_URL; do
  echo "export $name='rediss://:$REDIS_PASSWORD@127.0.0.1:$redis/0?ssl_cert_reqs=required&ssl_ca_certs=$ca'"
done
cat <<EOV
export DATABASE_URL='postgres://crypto:$DB_PASSWORD@127.0.0.1:$pg/crypto?sslmode=verify-full&sslrootcert=$ca'
export KAFKA_SECURITY_PROTOCOL=SASL_SSL
export KAFKA_SASL_MECHANISM=SCRAM-SHA-512
export KAFKA_SASL_USERNAME=crypto
export KAFKA_SASL_PASSWORD='$KAFKA_PASSWORD'
export KAFKA_SSL_CAFILE='$ca'
EOV
