#!/usr/bin/env bash
# Run a command beside throw-away PostgreSQL and Redis servers on 127.0.0.1, then stop them.
#
#   scripts/with-services.sh pytest -q
#
# The servers live in a temporary directory and listen on free ports; the command sees
# DATABASE_URL, DATABASE_DIRECT_URL, REDIS_URL and AEGIS_SERVICES_DIR (where redis.conf and the
# PostgreSQL data live, for tests that stop and restart a server). Missing Debian packages are
# installed when running as root; otherwise the script says what to install and stops.
#
# With AEGIS_TEST_TOOLS=1 (make test), the tests' tools are installed too: Chromium, its
# WebDriver, a Korean font and tesseract (the desk's browser test), gettext (the
# translations' test).
#
# With AEGIS_PGBOUNCER=1, PgBouncer stands between the command and PostgreSQL in transaction
# pooling with the review's pool sizes, as in production: DATABASE_URL goes through it (with
# DATABASE_POOLING=pgbouncer) and DATABASE_DIRECT_URL, for LISTEN, goes straight to PostgreSQL.
#
# PostgreSQL skips its flush to disk at each commit (fsync=off) unless AEGIS_PG_DURABLE=1.
#
# With AEGIS_PG_DATA=<dir> (make run), PostgreSQL keeps its data there from one run to the next
# (made on the first), and is flushed to disk at each commit.
set -euo pipefail

log() { printf '[services] %s\n' "$*" >&2; }

find_pg_bin() {
  local dir
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    [ -x "$dir/initdb" ] && { echo "$dir"; return 0; }
  done
  command -v initdb >/dev/null 2>&1 && { dirname "$(command -v initdb)"; return 0; }
  return 1
}

ensure_packages() {
  local missing=()
  find_pg_bin >/dev/null || missing+=(postgresql)
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
  if [ "${AEGIS_PGBOUNCER:-0}" = "1" ]; then
    command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ] || missing+=(pgbouncer)
  fi
  if [ "${AEGIS_TEST_TOOLS:-0}" = "1" ]; then  # the desk's browser test; makemessages
    command -v chromium >/dev/null 2>&1 || missing+=(chromium)
    command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
    command -v tesseract >/dev/null 2>&1 || missing+=(tesseract-ocr)
    command -v msgfmt >/dev/null 2>&1 || missing+=(gettext)
    [ -d /usr/share/fonts/truetype/nanum ] || missing+=(fonts-nanum)  # Korean in Chromium
  fi
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    log "missing: ${missing[*]}. Install them (sudo apt-get install -y ${missing[*]}) and run again."
    exit 2
  fi
  log "installing ${missing[*]} from the Debian packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

free_port() {
  python3 - <<'PY'
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
PY
}

ensure_packages
PG_BIN=$(find_pg_bin)
SERVICES_DIR=$(mktemp -d /tmp/aegis-services.XXXXXX)
chmod 755 "$SERVICES_DIR"
PG_PORT=$(free_port)
REDIS_PORT=$(free_port)
PG_DATA="${AEGIS_PG_DATA:-$SERVICES_DIR/pg}"
PG_STOP=immediate  # throw-away data; kept data (AEGIS_PG_DATA) is shut down cleanly
[ -n "${AEGIS_PG_DATA:-}" ] && PG_STOP=fast

# initdb refuses to run as root: use the postgres account the Debian package creates.
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

cleanup() {
  local rc=$?
  log "stopping"
  as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m "$PG_STOP" stop >/dev/null 2>&1 || true
  if [ -f "$SERVICES_DIR/pgbouncer/pgbouncer.pid" ]; then
    kill "$(cat "$SERVICES_DIR/pgbouncer/pgbouncer.pid")" 2>/dev/null || true
  fi
  if [ -f "$SERVICES_DIR/redis.pid" ]; then
    kill "$(cat "$SERVICES_DIR/redis.pid")" 2>/dev/null || true
  fi
  rm -rf "$SERVICES_DIR"
  exit $rc
}
trap cleanup EXIT INT TERM

PG_NEW=0
if [ ! -f "$PG_DATA/PG_VERSION" ]; then
  PG_NEW=1
  mkdir -p "$PG_DATA"
  [ "$(id -u)" -eq 0 ] && chown postgres "$PG_DATA"
  as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U aegis --auth=trust -E UTF8 --no-locale >/dev/null
fi
# Throw-away data, so no flush to disk at each commit, unless AEGIS_PG_DURABLE=1 (make bench):
# then every commit waits for its WAL flush, as in production.
PG_DURABILITY="-c fsync=off -c full_page_writes=off"
if [ "${AEGIS_PG_DURABLE:-0}" = 1 ] || [ "$PG_STOP" = fast ]; then
  PG_DURABILITY="-c fsync=on -c synchronous_commit=on"
fi
as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_DATA/server.log" -w -t 60 start -o \
  "-c listen_addresses=127.0.0.1 -c port=$PG_PORT -c unix_socket_directories=$PG_DATA \
   -c max_connections=300 $PG_DURABILITY -c shared_buffers=128MB" >/dev/null
[ "$PG_NEW" = 1 ] && "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U aegis aegis

cat >"$SERVICES_DIR/redis.conf" <<EOF
bind 127.0.0.1
port $REDIS_PORT
save ""
appendonly no
daemonize yes
pidfile $SERVICES_DIR/redis.pid
dir $SERVICES_DIR
logfile $SERVICES_DIR/redis.log
EOF
redis-server "$SERVICES_DIR/redis.conf"
for _ in $(seq 1 100); do
  redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
  sleep 0.1
done

export DATABASE_URL="postgres://aegis@127.0.0.1:$PG_PORT/aegis"
export DATABASE_DIRECT_URL="$DATABASE_URL"
if [ "${AEGIS_PGBOUNCER:-0}" = "1" ]; then
  PGB_PORT=$(free_port)
  PGB_BIN=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)
  # deploy/pgbouncer/pgbouncer.ini's pooling, on loopback; any database name (the test
  # database too) maps to the same server; trust, as the throw-away server itself.
  # The test suite ends PostgreSQL sessions under PgBouncer's feet (pricesync's lost-connection
  # test): it has each server connection checked before it is handed out (0). The benchmarks
  # keep production's default, 30 s (AEGIS_PGBOUNCER_CHECK_DELAY=30), as deploy/ does.
  PGB_CHECK_DELAY="${AEGIS_PGBOUNCER_CHECK_DELAY:-0}"
  PGB_DIR="$SERVICES_DIR/pgbouncer"
  mkdir -p "$PGB_DIR"
  cat >"$PGB_DIR/pgbouncer.ini" <<PGB
[databases]
* = host=127.0.0.1 port=$PG_PORT

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PGB_PORT
unix_socket_dir =
auth_type = trust
auth_file = $PGB_DIR/userlist.txt
pool_mode = transaction
max_client_conn = 1000
default_pool_size = 20
reserve_pool_size = 5
server_reset_query =
server_check_delay = $PGB_CHECK_DELAY
ignore_startup_parameters = extra_float_digits,options
pidfile = $PGB_DIR/pgbouncer.pid
logfile = $PGB_DIR/pgbouncer.log
PGB
  echo '"aegis" ""' >"$PGB_DIR/userlist.txt"
  [ "$(id -u)" -eq 0 ] && chown -R postgres "$PGB_DIR"
  as_pg "$PGB_BIN" -d "$PGB_DIR/pgbouncer.ini"
  ready=0
  for _ in $(seq 1 100); do
    if python3 -c "import socket; socket.create_connection(('127.0.0.1', $PGB_PORT), 1)" \
        2>/dev/null; then
      ready=1
      break
    fi
    sleep 0.1
  done
  if [ "$ready" -ne 1 ]; then
    log "PgBouncer did not start:"
    cat "$PGB_DIR/pgbouncer.log" >&2 || true
    exit 1
  fi
  export DATABASE_URL="postgres://aegis@127.0.0.1:$PGB_PORT/aegis"
  export DATABASE_POOLING=pgbouncer
  log "PgBouncer (transaction pooling) on 127.0.0.1:$PGB_PORT"
fi
export REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
export AEGIS_SERVICES_DIR="$SERVICES_DIR"
log "PostgreSQL on 127.0.0.1:$PG_PORT, Redis on 127.0.0.1:$REDIS_PORT"

set +e
"$@"
rc=$?
set -e
exit $rc
