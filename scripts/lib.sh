# Shared set-up steps for scripts/run and scripts/test (sourced, not executed).
# Idempotent: every step checks before it acts, so running the scripts twice is safe.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VOICEAI_VENV:-$ROOT/.venv}"
VAR="$ROOT/var"
ENV_FILE="$VAR/voiceai.env"
PY="${PYTHON:-python3}"

say() { printf '\033[1;34m==>\033[0m %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "need root for: $*" >&2; return 1; fi
}

APT_UPDATED=0
apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  say "installing Debian packages: ${missing[*]}"
  if [ "$APT_UPDATED" = 0 ]; then as_root apt-get update -qq; APT_UPDATED=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

ensure_system_packages() {
  command -v apt-get >/dev/null || { echo "this script expects Debian/Ubuntu (apt-get)" >&2; return 1; }
  local pkgs=(ca-certificates curl)
  command -v cc >/dev/null && command -v make >/dev/null || pkgs+=(build-essential)
  [ -f /usr/include/python3.11/Python.h ] || [ -n "$(command -v python3-config)" ] || pkgs+=(python3-dev)
  command -v "$PY" >/dev/null || pkgs+=(python3)
  "$PY" -c 'import venv, ensurepip' 2>/dev/null || pkgs+=(python3-venv)
  command -v pg_ctlcluster >/dev/null || command -v pg_isready >/dev/null || pkgs+=(postgresql)
  command -v psql >/dev/null || pkgs+=(postgresql-client)
  command -v redis-server >/dev/null || pkgs+=(redis-server)
  command -v redis-cli >/dev/null || pkgs+=(redis-tools)
  # Russian speech synthesis for prompts and the agent's voice; sox for audio checks.
  command -v text2wave >/dev/null && [ -d /usr/share/festival/voices/russian ] || pkgs+=(festival festvox-ru)
  command -v espeak-ng >/dev/null || pkgs+=(espeak-ng)
  command -v sox >/dev/null || pkgs+=(sox)
  command -v sipp >/dev/null || pkgs+=(sip-tester)   # SIPp: scenario tests and the real-FreeSWITCH test mode
  [ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || pkgs+=(fonts-dejavu-core)  # Cyrillic PDFs in KB tests
  # Headless Chromium for the cabinet's browser tests (Playwright drives /usr/bin/chromium).
  command -v chromium >/dev/null || pkgs+=(chromium)
  command -v chromedriver >/dev/null || pkgs+=(chromium-driver)
  pkgs+=(${VOICEAI_EXTRA_APT:-})
  apt_install "${pkgs[@]}"
}

ensure_postgres() {
  if pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then return 0; fi
  say "starting PostgreSQL"
  local ver
  ver="$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n1)"
  if [ -n "$ver" ]; then
    as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main start 2>/dev/null || \
      as_root pg_ctlcluster "$ver" main start || true
  else
    as_root service postgresql start || true
  fi
  for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p 5432 -q && return 0; sleep 1; done
  echo "PostgreSQL did not start on 127.0.0.1:5432" >&2; return 1
}

ensure_redis() {
  if redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then return 0; fi
  say "starting Redis"
  as_root mkdir -p /var/lib/redis /var/log/redis
  as_root redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/voiceai.log
  for _ in $(seq 1 20); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && return 0; sleep 0.5; done
  echo "Redis did not start on 127.0.0.1:6379" >&2; return 1
}

# Make sure we can log in to PostgreSQL over TCP; on a stock Debian install (password auth on
# 127.0.0.1) create a 'voiceai' role with a generated password and remember it in var/voiceai.env.
ensure_db_role() {
  if psql "postgresql://postgres@127.0.0.1:5432/postgres" -Atqc 'select 1' >/dev/null 2>&1; then
    DB_BASE_URL="postgresql://postgres@127.0.0.1:5432"; return 0
  fi
  local pw
  pw="$(grep -s '^VOICEAI_DB_PASSWORD=' "$ENV_FILE" | cut -d= -f2- || true)"
  if [ -z "$pw" ]; then
    pw="$("$PY" -c 'import secrets; print(secrets.token_hex(16))')"
    echo "VOICEAI_DB_PASSWORD=$pw" >> "$ENV_FILE"
  fi
  as_root runuser -u postgres -- psql -qc "DO \$\$BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname='voiceai') THEN
      CREATE ROLE voiceai LOGIN CREATEDB PASSWORD '$pw';
    ELSE ALTER ROLE voiceai LOGIN CREATEDB PASSWORD '$pw'; END IF; END\$\$;" >/dev/null
  DB_BASE_URL="postgresql://voiceai:$pw@127.0.0.1:5432"
}

ensure_database() {  # $1 = database name
  local name="$1"
  if ! psql "$DB_BASE_URL/postgres" -Atqc "select 1 from pg_database where datname='$name'" | grep -q 1; then
    say "creating database $name"
    psql "$DB_BASE_URL/postgres" -qc "CREATE DATABASE \"$name\"" >/dev/null
  fi
}

ensure_env_file() {
  mkdir -p "$VAR"
  touch "$ENV_FILE"; chmod 600 "$ENV_FILE"
  if ! grep -q '^VOICEAI_SECRET_KEY=' "$ENV_FILE"; then
    echo "VOICEAI_SECRET_KEY=$("$PY" -c 'import secrets; print(secrets.token_urlsafe(48))')" >> "$ENV_FILE"
  fi
  if ! grep -q '^VOICEAI_ENCRYPTION_KEYS=' "$ENV_FILE"; then
    echo "VOICEAI_ENCRYPTION_KEYS=$("$PY" -c 'import base64,os,secrets; print(secrets.token_hex(4)+":"+base64.urlsafe_b64encode(os.urandom(32)).decode())')" >> "$ENV_FILE"
  fi
}

load_env() {
  set -a
  # shellcheck disable=SC1090
  . "$ENV_FILE"
  set +a
}

ensure_venv() {  # $1 = extras, e.g. "test"
  local extras="${1:-}"
  if [ ! -x "$VENV/bin/python" ]; then
    say "creating virtualenv $VENV"
    "$PY" -m venv "$VENV"
  fi
  local stamp="$VENV/.voiceai-installed-$extras"
  if [ ! -f "$stamp" ] || [ "$ROOT/setup.cfg" -nt "$stamp" ]; then
    say "installing Python dependencies"
    "$VENV/bin/pip" install -q --upgrade pip setuptools wheel
    # llama-cpp-python has no wheel for every Python: build it portable (no -march=native) and in
    # parallel on the cores there are.
    CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}" CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}" \
      "$VENV/bin/pip" install -q -e "$ROOT${extras:+[$extras]}"
    touch "$stamp"
  fi
}

setup_lock() {  # serialise concurrent setups (two test runs at once must not both pip install)
  mkdir -p "$VAR"
  exec 9>"$VAR/.setup.lock"
  command -v flock >/dev/null && flock 9 || true
}

setup_unlock() {
  command -v flock >/dev/null && flock -u 9 || true
  exec 9>&-
}

setup_platform() {  # $1 = extras for the venv
  export VOICEAI_MODELS_DIR="${VOICEAI_MODELS_DIR:-$ROOT/var/models}"
  ensure_system_packages
  ensure_env_file
  ensure_postgres
  ensure_redis
  ensure_db_role
  ensure_venv "${1:-}"
  load_env
}
