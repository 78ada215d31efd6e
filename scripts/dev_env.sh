#!/usr/bin/env bash
# Writes the local-development dotenv file that cryptoproject/settings.py reads, so that
# `.venv/bin/python manage.py <command>` works from a fresh shell: DJANGO_DEBUG=true and the URLs of local stack N
# (scripts/stack_env.sh N; 0, the default, is the stack `make services` starts). `make setup` runs it for .env.
#
#   bash scripts/dev_env.sh FILE [N]
#
# A FILE that exists is left as it is (it may be the developer's own). The settings read it with the real environment
# winning, so `eval "$(bash scripts/stack_env.sh N)"` in a shell still points that shell at stack N.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
file="${1:?usage: dev_env.sh FILE [N]}"
n="${2:-0}"
if [ -e "$file" ]; then
  # One this script wrote before the stacks' ports moved below the ephemeral range (PostgreSQL 55432+10N -> 15432+10N,
  # Redis 56379+10N -> 16379+10N) gets its DATABASE_URL and REDIS_URL moved too; any other file or line is left as it is.
  if grep -q '^# LOCAL DEVELOPMENT ONLY: never deploy this file. Written by `make setup`' "$file" &&
    grep -Eq '^(DATABASE_URL|REDIS_URL)=[a-z]+://([^@/]*@)?127\.0\.0\.1:5[56][0-9]{3}/' "$file"; then
    sed -E -i 's#^((DATABASE_URL|REDIS_URL)=[a-z]+://([^@/]*@)?127\.0\.0\.1:)5([56][0-9]{3}/)#\11\4#' "$file"
    printf '[setup] %s: the local stack URLs moved to the new ports (PostgreSQL 15432+10N, Redis 16379+10N)\n' \
      "$file" >&2
  fi
  exit 0
fi
# The stack's variables in a subshell: this script's caller may have another stack's in its environment.
values=$(
  eval "$(bash "$ROOT/scripts/stack_env.sh" "$n")"
  printf 'KAFKA_BOOTSTRAP_SERVERS=%s\nDATABASE_URL=%s\nREDIS_URL=%s\n' \
    "$KAFKA_BOOTSTRAP_SERVERS" "$DATABASE_URL" "$REDIS_URL"
)
cat >"$file.tmp" <<EOF
# LOCAL DEVELOPMENT ONLY: never deploy this file. Written by \`make setup\` (scripts/dev_env.sh) for local stack $n;
# edit it freely, it is git-ignored and never overwritten. The settings read it when present and the environment
# wins over it; a deployment has no .env and sets its variables itself (see .env.example).
DJANGO_DEBUG=true
# The local stack (scripts/stack_env.sh $n). Celery, the Channels layer and the cache follow REDIS_URL.
$values
EOF
mv "$file.tmp" "$file"
printf '[setup] wrote %s for local development (DJANGO_DEBUG=true, stack %s): manage.py commands work from a fresh shell\n' \
  "$file" "$n" >&2
