# Shared by scripts/test and scripts/bench: install what the suite needs and start the servers
# it talks to. Sourced, not run. Every server started here is stopped by PID on exit.

RAPPORT_CLEANUP=()
rapport_cleanup() {
  local i
  for ((i=${#RAPPORT_CLEANUP[@]}-1; i>=0; i--)); do eval "${RAPPORT_CLEANUP[$i]}" || true; done
}
trap rapport_cleanup EXIT

log() { printf '==> %s\n' "$*" >&2; }

# apt-get install the named Debian packages that are missing.
ensure_packages() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing Debian packages: ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})" >&2
    return 1
  fi
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Exports RAPPORT_TEST_PG_URL: the running server on 127.0.0.1:5432 when it answers,
# otherwise a throwaway cluster in a temp dir on a free port.
ensure_postgres() {
  if [ -n "${RAPPORT_TEST_PG_URL:-}" ]; then
    log "PostgreSQL from RAPPORT_TEST_PG_URL"
    return 0
  fi
  local url="postgres://postgres@127.0.0.1:5432/test"
  if [ -z "${RAPPORT_FORCE_THROWAWAY_PG:-}" ] && command -v psql >/dev/null && psql "$url" -qAtc 'select 1' >/dev/null 2>&1; then
    export RAPPORT_TEST_PG_URL="$url"
    log "using the PostgreSQL server at 127.0.0.1:5432"
    # Drop the schemas earlier test runs left behind.
    psql "$url" -qAt -c "select 'drop schema if exists ' || nspname || ' cascade;' from pg_namespace where nspname like 'rt\_%'" \
      | psql "$url" -q >/dev/null 2>&1 || true
    return 0
  fi
  local bindir
  bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ]; then
    ensure_packages postgresql
    bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  fi
  local dir port runas=()
  dir=$(mktemp -d /tmp/rapport-pg.XXXXXX)
  port=$(free_port)
  if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
    chown postgres "$dir"
    runas=(runuser -u postgres --)
  fi
  log "starting a throwaway PostgreSQL in $dir on port $port"
  "${runas[@]}" "$bindir/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; return 1; }
  "${runas[@]}" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null \
    || { cat "$dir/server.log" >&2; return 1; }
  RAPPORT_CLEANUP+=("${runas[*]} '$bindir/pg_ctl' -D '$dir/data' -m fast stop >/dev/null 2>&1; rm -rf '$dir'")
  "$bindir/createdb" -h 127.0.0.1 -p "$port" -U postgres test
  export RAPPORT_TEST_PG_URL="postgres://postgres@127.0.0.1:$port/test"
}

# Installs Dovecot's IMAP server for the tests, which start their own instances (tests/common/dovecot.rs:
# temp dir, free port, own config), and creates the unprivileged user `rapport-mail` those instances
# store mail as (Dovecot refuses mail access as root). The Debian system service is not wanted: if
# installing the package started it, it is stopped and kept from starting at boot.
ensure_dovecot() {
  if [ ! -x /usr/sbin/dovecot ]; then
    ensure_packages dovecot-imapd
    # Stop the system instance the package's postinst may have started (policy-rc.d usually
    # prevents that in containers, but not everywhere).
    if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
      systemctl disable --now dovecot.service dovecot.socket >/dev/null 2>&1 || true
    elif [ -x /etc/init.d/dovecot ]; then
      /etc/init.d/dovecot stop >/dev/null 2>&1 || true
      update-rc.d dovecot disable >/dev/null 2>&1 || true
    fi
    local pid
    pid=$(cat /run/dovecot/master.pid 2>/dev/null || true)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      log "stopping the system Dovecot (pid $pid)"
      kill "$pid" || true
    fi
  fi
  if ! id rapport-mail >/dev/null 2>&1; then
    if [ "$(id -u)" -ne 0 ]; then
      echo "missing user rapport-mail (run as root, or: sudo useradd --system --user-group --no-create-home --shell /usr/sbin/nologin rapport-mail)" >&2
      return 1
    fi
    log "creating the system user rapport-mail"
    useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin rapport-mail
  fi
  log "Dovecot $(/usr/sbin/dovecot --version | cut -d' ' -f1)"
}
