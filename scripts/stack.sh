#!/usr/bin/env bash
# The local stack without Docker: Apache Kafka (KRaft, jars from Maven Central), PostgreSQL and Redis
# (Debian's packages), each with its data under .stack/ in the repository.
#
#   scripts/stack.sh install   apt packages when missing (postgresql, redis-server)
#   scripts/stack.sh up        start whatever is not running (idempotent; repairs stale pids); a port held by
#                              another process (another checkout's stack) stops it first, naming the port
#   scripts/stack.sh down      stop all three
#   scripts/stack.sh status    what runs where
#   scripts/stack.sh up postgres-replica    a streaming read replica of the PostgreSQL (also `up` with
#                                           STACK_PG_REPLICA=1; `down` stops it whenever it runs)
#
# Ports (the defaults match cryptoproject/settings.py and .env.example), each configurable so that several stacks
# can run side by side (scripts/stack_env.sh prints a consistent set for a second stack):
#   Kafka 127.0.0.1:9092 (STACK_KAFKA_PORT; controller STACK_KAFKA_CONTROLLER_PORT, default Kafka's port + 1),
#   PostgreSQL 127.0.0.1:15432 (STACK_PG_PORT; its replica on STACK_PG_REPLICA_PORT, default + 1),
#   Redis 127.0.0.1:16379 (STACK_REDIS_PORT); data under STACK_DIR (default .stack/); Kafka's jars under
#   STACK_KAFKA_LIBS (default STACK_DIR/kafka/libs).
#
# A TLS stack (eval "$(bash scripts/stack_env.sh N --tls)": STACK_TLS=1, its STACK_DIR holding tls/secrets.env) serves
# TLS only: a CA and a server certificate for 127.0.0.1 and localhost are made with openssl in STACK_DIR/tls/; Kafka's
# one client listener is SASL_SSL with SCRAM-SHA-512 users (the KRaft controller listener stays PLAINTEXT, on
# loopback, for the node's own quorum traffic only), PostgreSQL runs with ssl=on and hostssl lines only, Redis on a
# TLS port (plain port 0) with a password. One Kafka node and no replica there (docs/DEPLOYMENT.md).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STACK="${STACK_DIR:-$ROOT/.stack}"
PY="$ROOT/.venv/bin/python"

PG_PORT="${STACK_PG_PORT:-15432}"
REDIS_PORT="${STACK_REDIS_PORT:-16379}"
KAFKA_PORT="${STACK_KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${STACK_KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1))}"
KAFKA_HEAP="${KAFKA_HEAP:-512m}"
DB_NAME="${STACK_DB_NAME:-crypto}"
DB_USER="${STACK_DB_USER:-crypto}"
DB_PASSWORD="${STACK_DB_PASSWORD:-crypto}"
PG_REPLICA_PORT="${STACK_PG_REPLICA_PORT:-$((PG_PORT + 1))}"
PG_REPLICA="${STACK_PG_REPLICA:-0}"
REPL_USER="${STACK_PG_REPLICATION_USER:-replicator}"
REPL_PASSWORD="${STACK_PG_REPLICATION_PASSWORD:-replicator}"

TLS_DIR="$STACK/tls"
TLS_SECRETS="$TLS_DIR/secrets.env"
TLS=0
if [ "${STACK_TLS:-0}" = 1 ] || [ -f "$TLS_SECRETS" ]; then TLS=1; fi

KAFKA_DIR="$STACK/kafka"
KAFKA_LIBS="${STACK_KAFKA_LIBS:-$KAFKA_DIR/libs}"
KAFKA_PID="$KAFKA_DIR/kafka.pid"
KAFKA_BROKERS="${STACK_KAFKA_BROKERS:-1}"
KAFKA_CONF="$ROOT/deploy/kafka"
REDIS_DIR="$STACK/redis"

log() { printf '[stack] %s\n' "$*" >&2; }
die() { printf '[stack] ERROR: %s\n' "$*" >&2; exit 1; }

# --------------------------------------------------------------------------- TLS stack
if [ "$TLS" = 1 ]; then
  [ -s "$TLS_SECRETS" ] ||
    die "STACK_TLS=1 but $TLS_SECRETS is missing: eval \"\$(bash scripts/stack_env.sh N --tls)\" makes it"
  # shellcheck source=/dev/null
  . "$TLS_SECRETS"  # DB_PASSWORD, REDIS_PASSWORD, KAFKA_PASSWORD, KAFKA_BROKER_PASSWORD (stack_env.sh made them)
  [ "$KAFKA_BROKERS" -eq 1 ] || die "a TLS stack runs one Kafka node (STACK_KAFKA_BROKERS=$KAFKA_BROKERS)"
fi

# The stack's CA and the servers' certificate (SAN: localhost, 127.0.0.1), made once: ca.pem is what clients trust
# (KAFKA_SSL_CAFILE, sslrootcert, ssl_ca_certs); server-keystore.pem is key + certificate for Kafka's PEM keystore.
tls_certs() {
  [ -s "$TLS_DIR/server-keystore.pem" ] && return 0
  command -v openssl >/dev/null || die "openssl is not installed (apt-get install openssl)"
  log "making a CA and a server certificate in $TLS_DIR"
  mkdir -p "$TLS_DIR"
  chmod 700 "$TLS_DIR"
  (
    umask 077
    cd "$TLS_DIR"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=cryptoproject local stack CA" \
      -keyout ca.key -out ca.pem -addext basicConstraints=critical,CA:TRUE \
      -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout server.key -out server.csr 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 -extfile server.ext \
      -out server.pem 2>/dev/null
    openssl pkcs8 -topk8 -nocrypt -in server.key -out server.pk8
    cat server.pk8 server.pem >server-keystore.pem.new
    rm -f server.csr server.ext server.pk8
    mv server-keystore.pem.new server-keystore.pem
  ) || die "could not make the TLS certificates in $TLS_DIR"
  chmod 644 "$TLS_DIR/ca.pem"  # public; the keys stay 0600
}

# Exports what scripts/wait_kafka.py reads to reach this stack's broker (the application's variables); call it in a
# subshell. The password goes through the environment, never a command line (ps shows those).
kafka_client_exports() {
  if [ "$TLS" = 1 ]; then
    export KAFKA_SECURITY_PROTOCOL=SASL_SSL KAFKA_SASL_MECHANISM=SCRAM-SHA-512 KAFKA_SASL_USERNAME=crypto \
      KAFKA_SASL_PASSWORD="$KAFKA_PASSWORD" KAFKA_SSL_CAFILE="$TLS_DIR/ca.pem"
  else
    unset KAFKA_SECURITY_PROTOCOL KAFKA_SASL_MECHANISM KAFKA_SASL_USERNAME KAFKA_SASL_PASSWORD KAFKA_SSL_CAFILE
  fi
}

# --------------------------------------------------------------------------- helpers
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

pg_bin() {
  local d
  for d in /usr/lib/postgresql/*/bin; do [ -x "$d/pg_ctl" ] && latest="$d"; done
  [ -n "${latest:-}" ] || return 1
  printf '%s' "$latest"
}

# PostgreSQL refuses to run as root: as root the cluster belongs to the `postgres` system user. Its data dir
# stays under .stack/ when that user can reach it, else under /var/tmp, one folder per stack (for clones inside
# /root or mktemp -d, say).
# runuser lives in /usr/sbin, which is not on PATH after `su` without `-` or in cron: looked up there too. Without
# it nothing about the cluster can be checked, and that must stop the script rather than read as "down" (which once
# made `up` initialise a second cluster under /var/tmp).
pg_user() { if [ "$(id -u)" -eq 0 ]; then echo postgres; else id -un; fi; }
runuser_bin() {
  local d
  if command -v runuser >/dev/null 2>&1; then command -v runuser; return 0; fi
  for d in /usr/sbin /sbin /usr/bin /bin; do [ -x "$d/runuser" ] && { echo "$d/runuser"; return 0; }; done
  return 1
}
RUNUSER=""
if [ "$(id -u)" -eq 0 ]; then RUNUSER=$(runuser_bin) || RUNUSER=""; fi
need_runuser() {
  [ "$(id -u)" -ne 0 ] || [ -n "$RUNUSER" ] ||
    die "runuser not found (PATH, /usr/sbin, /sbin): as root PostgreSQL runs as the postgres user, and without it \
nothing about PostgreSQL can be checked or started (install util-linux)"
}
pg_run() {
  if [ "$(id -u)" -eq 0 ]; then need_runuser; "$RUNUSER" -u postgres -- "$@"; else "$@"; fi
}
pg_data_dir() {
  local want="$STACK/postgres"
  if [ "$(id -u)" -ne 0 ]; then echo "$want"; return; fi
  need_runuser
  mkdir -p "$STACK"
  if "$RUNUSER" -u postgres -- test -x "$STACK" 2>/dev/null; then
    echo "$want"
  else
    # Keyed by the stack's own folder (which is the checkout's .stack, .stack-N, ...): one cluster per stack.
    echo "/var/tmp/cryptoproject-$(cd "$STACK" && pwd | sha1sum | cut -c1-10)/postgres"
  fi
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {  # port seconds name
  local i
  for ((i = 0; i < $2 * 10; i++)); do port_open "$1" && return 0; sleep 0.1; done
  die "$3 did not open 127.0.0.1:$1 within $2 s"
}

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# port_free PORT SERVER VARIABLE: dies, saying what to do, when something listens on PORT. Called only for a server of
# this stack that is not running, so whatever answers there is not ours (another checkout's stack, most likely):
# starting anyway would fail later with the cause buried in the server's own log.
port_free() {
  port_open "$1" || return 0
  die "127.0.0.1:$1 ($2, $3) is already in use by another process, not this stack ($STACK). Stop the other stack \
(make services-down in its checkout), or use another stack here: eval \"\$(bash scripts/stack_env.sh N)\" \
(N = 1, 2, ...: other ports and .stack-N/), then make services"
}

# --------------------------------------------------------------------------- install
cmd_install() {
  local need=()
  pg_bin >/dev/null || need+=(postgresql)
  command -v redis-server >/dev/null || need+=(redis-server)
  command -v java >/dev/null || need+=(openjdk-17-jre-headless)
  command -v mvn >/dev/null || need+=(maven)
  # Headless browser for the dashboard browser test (Playwright drives it; never downloads one).
  [ -x /usr/bin/chromium ] || need+=(chromium)
  if [ ${#need[@]} -gt 0 ]; then
    log "installing Debian packages: ${need[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
}

cmd_kafka_jars() {
  local stamp="$KAFKA_LIBS/.pom.sha1" want
  want=$(sha1sum "$KAFKA_CONF/pom.xml" | cut -c1-40)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && ls "$KAFKA_LIBS"/kafka_2.13-*.jar >/dev/null 2>&1; then
    return 0
  fi
  log "fetching Kafka jars from Maven Central into $KAFKA_LIBS"
  rm -rf "$KAFKA_LIBS"
  mkdir -p "$KAFKA_LIBS" "$STACK/kafka"
  # Maven's output goes to a log, shown only when the fetch fails (its quiet mode still prints colour codes).
  if ! mvn -B -q -f "$KAFKA_CONF/pom.xml" dependency:copy-dependencies "-Dlibs.dir=$KAFKA_LIBS" \
    >"$STACK/kafka/mvn.log" 2>&1; then
    cat "$STACK/kafka/mvn.log" >&2
    die "could not fetch the Kafka jars from Maven Central (see above)"
  fi
  echo "$want" >"$stamp"
}

# --------------------------------------------------------------------------- PostgreSQL
pg_up() {
  local bin data
  need_runuser
  bin=$(pg_bin) || die "PostgreSQL is not installed (run: scripts/stack.sh install)"
  data=$(pg_data_dir)
  local sock="$data/../run"
  if [ ! -f "$data/PG_VERSION" ]; then
    log "initialising PostgreSQL cluster in $data"
    rm -rf "$data"
    mkdir -p "$data" "$sock"
    [ "$(id -u)" -eq 0 ] && chown -R postgres: "$(dirname "$data")"
    pg_run "$bin/initdb" -D "$data" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
      -E UTF8 --locale=C.UTF-8 >/dev/null
    cat >>"$data/postgresql.conf" <<EOF
# cryptoproject local stack
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$(cd "$sock" && pwd)'
max_connections = 200
shared_buffers = 256MB
max_wal_size = 2GB
# A streaming replica may follow (stack.sh up postgres-replica); 15's defaults, said explicitly.
wal_level = replica
max_wal_senders = 10
EOF
    if [ "$TLS" = 1 ]; then pg_tls "$data"; fi
  fi
  mkdir -p "$sock"
  [ "$(id -u)" -eq 0 ] && chown postgres: "$sock"
  # A cluster that runs on another port (initialised when the stacks' ports were 55432 + 10 N) is stopped and
  # started again on this one: -p below wins over the port its postgresql.conf names.
  if pg_run "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1 && ! port_open "$PG_PORT"; then
    log "PostgreSQL of this stack runs on another port: restarting it on $PG_PORT"
    pg_run "$bin/pg_ctl" -D "$data" -m fast -w stop >/dev/null
  fi
  if ! pg_run "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    port_free "$PG_PORT" PostgreSQL STACK_PG_PORT
    rm -f "$data/postmaster.pid"  # stale pid from a killed server
    pg_run "$bin/pg_ctl" -D "$data" -o "-p $PG_PORT" -l "$data/../postgres.log" -w -t 60 start >/dev/null ||
      die "PostgreSQL did not start; see $data/../postgres.log"
  fi
  local psql=("$bin/psql" -h "$(cd "$sock" && pwd)" -p "$PG_PORT" -U postgres -v ON_ERROR_STOP=1 -qtA)
  if [ "$(pg_run "${psql[@]}" -c "SELECT 1 FROM pg_roles WHERE rolname='$DB_USER'")" != 1 ]; then
    pg_run "${psql[@]}" -c "CREATE ROLE $DB_USER LOGIN CREATEDB PASSWORD '$DB_PASSWORD'"
  fi
  # make bench-scale forces a checkpoint between its setup and its measurements; nothing else needs it.
  pg_run "${psql[@]}" -c "GRANT pg_checkpoint TO $DB_USER" 2>/dev/null
  if [ "$(pg_run "${psql[@]}" -c "SELECT 1 FROM pg_database WHERE datname='$DB_NAME'")" != 1 ]; then
    pg_run "${psql[@]}" -c "CREATE DATABASE $DB_NAME OWNER $DB_USER"
  fi
  log "PostgreSQL up on 127.0.0.1:$PG_PORT (data $data)"
}

# pg_tls DATA: ssl=on with the stack's certificate (a copy in the data dir: the server wants its key owned by itself,
# 0600), and a pg_hba.conf whose TCP lines are all hostssl: a connection without TLS finds no line and is refused.
pg_tls() {
  tls_certs
  cp "$TLS_DIR/server.pem" "$1/server.crt"
  cp "$TLS_DIR/server.key" "$1/server.key"
  chmod 600 "$1/server.key"
  [ "$(id -u)" -eq 0 ] && chown postgres: "$1/server.crt" "$1/server.key"
  pg_run sh -c "cat >>'$1/postgresql.conf'" <<EOF
# TLS only (scripts/stack_env.sh N --tls): pg_hba.conf has hostssl lines only
ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
ssl_min_protocol_version = 'TLSv1.2'
EOF
  pg_run sh -c "cat >'$1/pg_hba.conf'" <<EOF
# cryptoproject TLS stack: the Unix socket for the stack script itself, TLS with a password for everyone else
local     all  all                 trust
hostssl   all  all  127.0.0.1/32   scram-sha-256
hostssl   all  all  ::1/128        scram-sha-256
EOF
}

# pg_stop DIR NAME: stop the cluster in DIR if it runs (fast shutdown), saying NAME stopped.
pg_stop() {
  local bin
  bin=$(pg_bin) || return 0
  [ -f "$1/PG_VERSION" ] || return 0
  if pg_run "$bin/pg_ctl" -D "$1" status >/dev/null 2>&1; then
    pg_run "$bin/pg_ctl" -D "$1" -m fast -w stop >/dev/null
    log "$2 stopped"
  fi
}

pg_down() {
  need_runuser
  pg_stop "$(pg_data_dir)" "PostgreSQL"
}

# --------------------------------------------------------------------------- PostgreSQL streaming replica
# A hot standby of the cluster above, for the read-replica routing (DATABASE_REPLICA_URL): cloned with
# pg_basebackup -R over a replication connection of its own role, then streaming. No replication slot: a replica
# left stopped must never make the primary keep WAL without bound; one that fell too far behind is re-cloned.
pg_replica_dir() { echo "$(dirname "$(pg_data_dir)")/postgres-replica"; }

pg_sysid() {  # bin data: the cluster's system identifier (a clone shares its primary's)
  pg_run "$1/pg_controldata" -D "$2" 2>/dev/null | sed -n 's/^Database system identifier: *//p'
}

pg_replica_streaming() {  # bin sock
  [ "$(pg_run "$1/psql" -h "$2" -p "$PG_REPLICA_PORT" -U postgres -qtA \
    -c "SELECT status FROM pg_stat_wal_receiver" 2>/dev/null)" = streaming ]
}

pg_replica_up() {
  [ "$TLS" = 0 ] || die "a TLS stack has no PostgreSQL replica (its pg_hba.conf admits hostssl clients only)"
  need_runuser
  pg_up
  local bin data dir sock
  bin=$(pg_bin); data=$(pg_data_dir); dir=$(pg_replica_dir)
  sock="$(cd "$data/../run" && pwd)"
  local psql=("$bin/psql" -h "$sock" -p "$PG_PORT" -U postgres -v ON_ERROR_STOP=1 -qtA)
  [ "$(pg_run "${psql[@]}" -c "SHOW wal_level")" != minimal ] || die "the primary runs with wal_level=minimal"
  if [ "$(pg_run "${psql[@]}" -c "SELECT 1 FROM pg_roles WHERE rolname='$REPL_USER'")" != 1 ]; then
    pg_run "${psql[@]}" -c "CREATE ROLE $REPL_USER REPLICATION LOGIN PASSWORD '$REPL_PASSWORD'"
  fi
  # initdb's pg_hba.conf admits replication from 127.0.0.1 with a password; a hand-edited one may not.
  if ! pg_run grep -Eq "^host[[:space:]]+replication[[:space:]]+(all|$REPL_USER)[[:space:]]+127\.0\.0\.1/32" \
    "$data/pg_hba.conf"; then
    pg_run sh -c "echo 'host replication $REPL_USER 127.0.0.1/32 scram-sha-256' >>'$data/pg_hba.conf'"
    pg_run "${psql[@]}" -c "SELECT pg_reload_conf()" >/dev/null
  fi
  # Clone again when the data dir is not a standby of this primary (re-initialised since) or an unfinished clone.
  # Also when it follows the primary on another port (its primary_conninfo names the port it was cloned from).
  if [ -f "$dir/PG_VERSION" ] &&
    { [ ! -f "$dir/standby.signal" ] || [ "$(pg_sysid "$bin" "$dir")" != "$(pg_sysid "$bin" "$data")" ] ||
      ! pg_run grep -q "port=$PG_PORT " "$dir/postgresql.auto.conf"; }; then
    log "PostgreSQL replica in $dir is not a standby of $data on port $PG_PORT: cloning it again"
    pg_run "$bin/pg_ctl" -D "$dir" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$dir"
  fi
  if [ ! -f "$dir/PG_VERSION" ]; then
    log "cloning the PostgreSQL replica into $dir (pg_basebackup -R)"
    rm -rf "$dir"
    mkdir -p "$dir"
    [ "$(id -u)" -eq 0 ] && chown postgres: "$dir"
    chmod 700 "$dir"
    if ! pg_run env PGPASSWORD="$REPL_PASSWORD" "$bin/pg_basebackup" -h 127.0.0.1 -p "$PG_PORT" -U "$REPL_USER" \
      -D "$dir" -R -X stream -c fast >"$dir/../postgres-replica-clone.log" 2>&1; then
      cat "$dir/../postgres-replica-clone.log" >&2
      rm -rf "$dir"
      die "pg_basebackup from 127.0.0.1:$PG_PORT failed (see above)"
    fi
    # Later lines win: the clone's postgresql.conf is the primary's.
    pg_run sh -c "cat >>'$dir/postgresql.conf'" <<EOF
# cryptoproject local stack: streaming replica
port = $PG_REPLICA_PORT
shared_buffers = 128MB
hot_standby = on
EOF
  fi
  if ! pg_run "$bin/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
    port_free "$PG_REPLICA_PORT" "PostgreSQL replica" STACK_PG_REPLICA_PORT
    rm -f "$dir/postmaster.pid"
    pg_run "$bin/pg_ctl" -D "$dir" -o "-p $PG_REPLICA_PORT" -l "$dir/../postgres-replica.log" -w -t 60 start \
      >/dev/null ||
      die "the PostgreSQL replica did not start; see $dir/../postgres-replica.log"
  fi
  local i
  for ((i = 0; i < 600; i++)); do pg_replica_streaming "$bin" "$sock" && break; sleep 0.1; done
  pg_replica_streaming "$bin" "$sock" ||
    die "the PostgreSQL replica on 127.0.0.1:$PG_REPLICA_PORT is not streaming; see $dir/../postgres-replica.log"
  log "PostgreSQL replica streaming on 127.0.0.1:$PG_REPLICA_PORT (data $dir)"
}

pg_replica_down() {
  need_runuser
  pg_stop "$(pg_replica_dir)" "PostgreSQL replica"
}

# --------------------------------------------------------------------------- Redis
redis_up() {
  command -v redis-server >/dev/null || die "redis-server is not installed (run: scripts/stack.sh install)"
  mkdir -p "$REDIS_DIR"
  if pid_alive "$REDIS_DIR/redis.pid" && port_open "$REDIS_PORT"; then
    log "Redis already up on 127.0.0.1:$REDIS_PORT"
    return 0
  fi
  # One that runs on another port (the stacks' ports before 16379 + 10 N) shares this data directory: stop it first.
  if pid_alive "$REDIS_DIR/redis.pid"; then
    log "Redis of this stack runs on another port: restarting it on $REDIS_PORT"
    redis_down
  fi
  port_free "$REDIS_PORT" Redis STACK_REDIS_PORT
  rm -f "$REDIS_DIR/redis.pid"
  if [ "$TLS" = 1 ]; then
    redis_tls_up
    return 0
  fi
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$REDIS_DIR" --daemonize yes \
    --pidfile "$REDIS_DIR/redis.pid" --logfile "$REDIS_DIR/redis.log" \
    --appendonly yes --appendfsync everysec --save "" --protected-mode yes
  wait_port "$REDIS_PORT" 20 Redis
  log "Redis up on 127.0.0.1:$REDIS_PORT"
}

# TLS on STACK_REDIS_PORT, no plain port, a password: all in a config file of mode 0600 (a --requirepass argument
# would show in ps). Clients are not asked for certificates (tls-auth-clients no): the password authenticates them.
redis_tls_up() {
  tls_certs
  (
    umask 077
    cat >"$REDIS_DIR/redis-tls.conf" <<EOF
bind 127.0.0.1
port 0
tls-port $REDIS_PORT
tls-cert-file $TLS_DIR/server.pem
tls-key-file $TLS_DIR/server.key
tls-ca-cert-file $TLS_DIR/ca.pem
tls-auth-clients no
requirepass $REDIS_PASSWORD
dir $REDIS_DIR
daemonize yes
pidfile $REDIS_DIR/redis.pid
logfile $REDIS_DIR/redis.log
appendonly yes
appendfsync everysec
save ""
protected-mode yes
EOF
  )
  redis-server "$REDIS_DIR/redis-tls.conf" ||
    die "Redis did not start with TLS (a redis-server built without TLS support?); see $REDIS_DIR/redis.log"
  wait_port "$REDIS_PORT" 20 Redis
  log "Redis up on 127.0.0.1:$REDIS_PORT (TLS only, password)"
}

redis_down() {
  if pid_alive "$REDIS_DIR/redis.pid"; then
    kill "$(cat "$REDIS_DIR/redis.pid")"
    local i
    for ((i = 0; i < 100; i++)); do pid_alive "$REDIS_DIR/redis.pid" || break; sleep 0.1; done
    log "Redis stopped"
  fi
  rm -f "$REDIS_DIR/redis.pid"
}

# --------------------------------------------------------------------------- Kafka
# One combined broker+controller by default. STACK_KAFKA_BROKERS=3 starts a three-node KRaft cluster (a static
# controller quorum of all three) for fault tests: node i listens on STACK_KAFKA_PORT + 2(i-1), its controller on the
# next port, its data under kafka/ (node 1) or kafka-<i>/, and topics default to 3 replicas with min.insync.replicas 2.
node_dir() { if [ "$1" -eq 1 ]; then echo "$STACK/kafka"; else echo "$STACK/kafka-$1"; fi; }
node_port() { echo $((KAFKA_PORT + 2 * ($1 - 1))); }
node_controller_port() {
  if [ "$KAFKA_BROKERS" -eq 1 ]; then echo "$KAFKA_CONTROLLER_PORT"; else echo $((KAFKA_PORT + 2 * ($1 - 1) + 1)); fi
}

java_args() {  # node, then the arguments: the JVM flags for Kafka
  local dir
  dir=$(node_dir "$1"); shift
  JAVA_ARGS=(-Xms256m "-Xmx$KAFKA_HEAP" -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true
    "-Dkafka.logs.dir=$dir/logs" "-Dlog4j2.configurationFile=$KAFKA_CONF/log4j2.yaml" -cp "$KAFKA_LIBS/*" "$@")
}

kafka_props() {  # node: server.properties from the repo with node id, data dir and ports filled in
  local node=$1 dir port cport
  dir=$(node_dir "$node"); port=$(node_port "$node"); cport=$(node_controller_port "$node")
  mkdir -p "$dir"
  sed -e "s#@KAFKA_DATA@#$dir/data#" -e "s#@KAFKA_PORT@#$port#g" -e "s#@KAFKA_CONTROLLER_PORT@#$cport#g" \
    -e "s#^node.id=.*#node.id=$node#" "$KAFKA_CONF/server.properties" >"$dir/server.properties"
  if [ "$TLS" = 1 ]; then kafka_tls_props "$dir"; fi
  if [ "$KAFKA_BROKERS" -gt 1 ]; then
    local voters="" i
    for ((i = 1; i <= KAFKA_BROKERS; i++)); do voters+="${voters:+,}$i@127.0.0.1:$(node_controller_port "$i")"; done
    sed -i -e '/^controller.quorum.bootstrap.servers=/d' -e '/replication.factor=/d' -e '/min.isr=/d' \
      -e '/^min.insync.replicas=/d' "$dir/server.properties"
    cat >>"$dir/server.properties" <<EOP
# ${KAFKA_BROKERS}-node cluster (scripts/stack.sh, STACK_KAFKA_BROKERS)
controller.quorum.voters=$voters
offsets.topic.replication.factor=3
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=2
default.replication.factor=3
min.insync.replicas=2
EOP
  fi
}

# kafka_tls_props DIR: the client listener becomes SASL_SSL (SCRAM-SHA-512), the only one clients can reach; the broker
# talks to itself over it as user "broker". The controller listener stays PLAINTEXT on 127.0.0.1: only this node's
# quorum traffic uses it (no client is ever given its port). The file holds the broker's password: mode 0600.
kafka_tls_props() {
  local f="$1/server.properties"
  tls_certs
  sed -i -e 's#PLAINTEXT://127#SASL_SSL://127#g' -e '/^inter.broker.listener.name=/d' \
    -e '/^listener.security.protocol.map=/d' "$f"
  chmod 600 "$f"
  cat >>"$f" <<EOP
# TLS only (scripts/stack_env.sh N --tls)
inter.broker.listener.name=SASL_SSL
listener.security.protocol.map=CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required \\
  username="broker" password="$KAFKA_BROKER_PASSWORD";
ssl.keystore.type=PEM
ssl.keystore.location=$TLS_DIR/server-keystore.pem
ssl.truststore.type=PEM
ssl.truststore.location=$TLS_DIR/ca.pem
ssl.client.auth=none
EOP
}

cluster_id() {  # one id for every node of this stack, kept beside them
  local file="$STACK/kafka-cluster-id"
  if [ "$KAFKA_BROKERS" -eq 1 ] || [ ! -s "$file" ]; then
    # One id in 64 would start with "-", which the storage tool takes for an option (CI failed on one): like
    # Kafka's own Uuid.randomUuid, draw again until it does not.
    python3 -c '
import base64, uuid
while (cid := base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")).startswith("-"):
    pass
print(cid)' >"$file.new"
    [ "$KAFKA_BROKERS" -eq 1 ] && { cat "$file.new"; rm -f "$file.new"; return; }
    mv "$file.new" "$file"
  fi
  cat "$file"
}

node_ports_free() {  # node: its listener and controller ports, before it starts
  local what=Kafka var=STACK_KAFKA_PORT cvar=STACK_KAFKA_CONTROLLER_PORT
  if [ "$KAFKA_BROKERS" -gt 1 ]; then what="Kafka node $1"; var="STACK_KAFKA_PORT + $((2 * ($1 - 1)))"; cvar="$var + 1"; fi
  port_free "$(node_port "$1")" "$what" "$var"
  port_free "$(node_controller_port "$1")" "$what controller" "$cvar"
}

node_start() {  # node: start it when not running (formats its storage the first time)
  local node=$1 dir pid port
  dir=$(node_dir "$node"); pid="$dir/kafka.pid"; port=$(node_port "$node")
  if pid_alive "$pid"; then return 0; fi
  node_ports_free "$node"
  rm -f "$pid"
  kafka_props "$node"
  # A dir without meta.properties in it was never (fully) formatted: start it afresh.
  if [ ! -f "$dir/data/meta.properties" ]; then
    rm -rf "$dir/data"
    mkdir -p "$dir/data"
    local cid standalone=()
    cid=$(cluster_id)
    [ "$KAFKA_BROKERS" -eq 1 ] && standalone=(--standalone)
    log "formatting Kafka storage of node $node (cluster id $cid)"
    # A TLS stack's SCRAM users are written into the metadata log at format time (KRaft has no ZooKeeper to hold
    # them before the broker runs): the broker's own and the application's (KAFKA_SASL_USERNAME=crypto).
    local scram=()
    if [ "$TLS" = 1 ]; then
      scram=(--add-scram "SCRAM-SHA-512=[name=broker,password=$KAFKA_BROKER_PASSWORD]"
        --add-scram "SCRAM-SHA-512=[name=crypto,password=$KAFKA_PASSWORD]")
    fi
    java_args "$node" kafka.tools.StorageTool format "${standalone[@]}" -g -t "$cid" -c "$dir/server.properties" \
      "${scram[@]}"
    java "${JAVA_ARGS[@]}" >"$dir/format.log" 2>&1 || { rm -rf "$dir/data"; die "Kafka format failed; see $dir/format.log"; }
  fi
  mkdir -p "$dir/logs"
  java_args "$node" kafka.Kafka "$dir/server.properties"
  # setsid: the broker outlives the shell (and a Ctrl-C in `make demo`) that started it.
  setsid nohup java "${JAVA_ARGS[@]}" >"$dir/kafka.out" 2>&1 </dev/null &
  echo $! >"$pid"
}

node_wait() {  # node timeout
  local dir port
  dir=$(node_dir "$1"); port=$(node_port "$1")
  if ! (kafka_client_exports && "$PY" "$ROOT/scripts/wait_kafka.py" "127.0.0.1:$port" --timeout "$2" \
    --brokers "${3:-1}" >&2); then
    tail -n 30 "$dir/kafka.out" >&2 || true
    die "Kafka node $1 did not become ready on 127.0.0.1:$port; see $dir/kafka.out and $dir/logs"
  fi
}

kafka_up() {
  ls "$KAFKA_LIBS"/kafka_2.13-*.jar >/dev/null 2>&1 || cmd_kafka_jars
  local t0=$SECONDS i
  # All nodes first, then wait: a cluster's controllers need their quorum before any node answers.
  for ((i = 1; i <= KAFKA_BROKERS; i++)); do node_start "$i"; done
  # Ready means every node registered with the controllers (topics of 3 replicas need all three), not just up.
  for ((i = 1; i <= KAFKA_BROKERS; i++)); do node_wait "$i" 120 "$KAFKA_BROKERS"; done
  log "Kafka up on 127.0.0.1:$KAFKA_PORT ($KAFKA_BROKERS node(s)) in $((SECONDS - t0)) s"
}

node_stop() {  # node [signal]
  local dir pid
  dir=$(node_dir "$1"); pid="$dir/kafka.pid"
  if pid_alive "$pid"; then
    local p i
    p=$(cat "$pid")
    kill "-${2:-TERM}" "$p"
    for ((i = 0; i < 300; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$p" 2>/dev/null && kill -9 "$p"
    log "Kafka node $1 stopped"
  fi
  rm -f "$pid"
}

kafka_down() {
  local i
  for ((i = KAFKA_BROKERS; i >= 1; i--)); do node_stop "$i"; done
}

# --------------------------------------------------------------------------- status
cmd_status() {
  local rc=0 bin data
  need_runuser  # "cannot check" is an error, never "down"
  if bin=$(pg_bin) && data=$(pg_data_dir) && [ -f "$data/PG_VERSION" ] &&
    pg_run "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1 && port_open "$PG_PORT"; then
    echo "postgresql  up    127.0.0.1:$PG_PORT  data=$data"
  else
    echo "postgresql  down  127.0.0.1:$PG_PORT"; rc=1
  fi
  local rdir
  rdir=$(pg_replica_dir)
  if [ "$PG_REPLICA" = 1 ] || [ -f "$rdir/PG_VERSION" ]; then
    if [ -n "${bin:-}" ] && [ -d "${rdir%/*}/run" ] && pg_replica_streaming "$bin" "${rdir%/*}/run"; then
      echo "replica     up    127.0.0.1:$PG_REPLICA_PORT  streaming data=$rdir"
    else
      echo "replica     down  127.0.0.1:$PG_REPLICA_PORT"
      # Counted only when asked for: a replica made once and left stopped is not a broken stack.
      if [ "$PG_REPLICA" = 1 ]; then rc=1; fi
    fi
  fi
  if pid_alive "$REDIS_DIR/redis.pid" && port_open "$REDIS_PORT"; then
    echo "redis       up    127.0.0.1:$REDIS_PORT  pid=$(cat "$REDIS_DIR/redis.pid") data=$REDIS_DIR"
  else
    echo "redis       down  127.0.0.1:$REDIS_PORT"; rc=1
  fi
  local i dir port rss
  for ((i = 1; i <= KAFKA_BROKERS; i++)); do
    dir=$(node_dir "$i"); port=$(node_port "$i")
    if pid_alive "$dir/kafka.pid" && port_open "$port"; then
      rss=$(ps -o rss= -p "$(cat "$dir/kafka.pid")" 2>/dev/null | tr -d ' ')
      echo "kafka       up    127.0.0.1:$port  pid=$(cat "$dir/kafka.pid") rss=$((${rss:-0} / 1024))MB data=$dir/data"
    else
      echo "kafka       down  127.0.0.1:$port"; rc=1
    fi
  done
  return $rc
}

# `up`/`down` take optional server names (postgres, postgres-replica, redis, kafka, or kafka-<node> for one node of a
# cluster), so a fault test can stop and start one server: `stack.sh down kafka`, `stack.sh up kafka`,
# `stack.sh kill kafka-2`. `down postgres` stops its replica first.
servers() {  # the action, then the names given (all three when none)
  local action=$1 name
  shift
  [ $# -gt 0 ] || set -- postgres redis kafka
  for name in "$@"; do
    case "$action:$name" in
      up:postgres) pg_up ;; up:postgres-replica) pg_replica_up ;; up:redis) redis_up ;; up:kafka) kafka_up ;;
      up:kafka-[0-9]*) node_start "${name#kafka-}"; node_wait "${name#kafka-}" 120 ;;
      down:postgres) pg_replica_down; pg_down ;; down:postgres-replica) pg_replica_down ;;
      down:redis) redis_down ;; down:kafka) kafka_down ;;
      down:kafka-[0-9]*) node_stop "${name#kafka-}" ;;
      kill:kafka-[0-9]*) node_stop "${name#kafka-}" KILL ;;
      *) die "unknown server '$name' for $action (postgres, postgres-replica, redis, kafka, kafka-<node>)" ;;
    esac
  done
}

# Every port that `up` is about to take, checked before anything starts: a conflict stops it with nothing half-started.
# Servers of this stack that already run are skipped (their ports are theirs), so `up` stays idempotent.
ports_free() {
  local bin i
  if bin=$(pg_bin); then
    pg_run "$bin/pg_ctl" -D "$(pg_data_dir)" status >/dev/null 2>&1 || port_free "$PG_PORT" PostgreSQL STACK_PG_PORT
    if [ "$PG_REPLICA" = 1 ] && ! pg_run "$bin/pg_ctl" -D "$(pg_replica_dir)" status >/dev/null 2>&1; then
      port_free "$PG_REPLICA_PORT" "PostgreSQL replica" STACK_PG_REPLICA_PORT
    fi
  fi
  { pid_alive "$REDIS_DIR/redis.pid" && port_open "$REDIS_PORT"; } || port_free "$REDIS_PORT" Redis STACK_REDIS_PORT
  for ((i = 1; i <= KAFKA_BROKERS; i++)); do pid_alive "$(node_dir "$i")/kafka.pid" || node_ports_free "$i"; done
}

case "${1:-}" in
  install) cmd_install ;;
  jars) cmd_kafka_jars ;;
  up)
    shift
    if [ $# -eq 0 ]; then
      ports_free
      if [ "$PG_REPLICA" = 1 ]; then pg_replica_up; else pg_up; fi  # the replica's starts its primary first
      redis_up; kafka_up
    else
      servers up "$@"
    fi ;;
  # The replica stops before its primary: stopped after, it would log reconnection attempts meanwhile.
  down) shift; if [ $# -eq 0 ]; then kafka_down; redis_down; pg_replica_down; pg_down; else servers down "$@"; fi ;;
  kill) shift; servers kill "$@" ;;
  status) cmd_status ;;
  *) die "usage: $0 install|jars|up [server...]|down [server...]|kill kafka-<node>|status" ;;
esac
