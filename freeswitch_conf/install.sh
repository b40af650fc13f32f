#!/usr/bin/env bash
# Install the VoiceAI FreeSWITCH configuration into an existing FreeSWITCH 1.10 configuration
# directory (Debian: /etc/freeswitch). Idempotent: files already identical are left alone, so a
# second run changes nothing. Every file it replaces or moves is first copied, with its path, into
# <target>/voiceai-backup-<timestamp>/.
#
#   sudo VOICEAI_ESL_PASSWORD='...' freeswitch_conf/install.sh [--dry-run] [--target DIR] [--app-user USER]
#
# What it does (see docs/telephony.md):
#   - installs conf/** (event socket, modules, switch, ACL, SIP profiles, operator users, dialplan
#     entry points), replacing the stock versions;
#   - writes voiceai_vars.xml (ESL password from VOICEAI_ESL_PASSWORD, generated operator phone
#     passwords kept across runs) and adds one include line for it to vars.xml;
#   - creates the voiceai_generated/ (platform) and voiceai_custom/ (administrator) directories and
#     seeds them (an empty voiceai_trunks ACL, readme files);
#   - moves stock demo users that collide with the operator extensions 1001-1003 into the backup;
#   - prints the fs_cli commands that apply the change.
set -euo pipefail

TARGET="/etc/freeswitch"
DRY_RUN=0
APP_USER="${VOICEAI_APP_USER:-voiceai}"
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CONF_SRC="$SCRIPT_DIR/conf"
SEED_SRC="$SCRIPT_DIR/seed"
VARS_LINE='<X-PRE-PROCESS cmd="include" data="voiceai_vars.xml"/>'
OPERATORS=(1001 1002 1003)
GENERATED_DIRS=(
  "dialplan/public/voiceai_generated"
  "dialplan/voiceai_operators/voiceai_generated"
  "sip_profiles/external/voiceai_generated"
  "autoload_configs/voiceai_acl/voiceai_generated"
)
CUSTOM_DIRS=(
  "dialplan/public/voiceai_custom"
  "dialplan/voiceai_operators/voiceai_custom"
  "sip_profiles/external/voiceai_custom"
  "autoload_configs/voiceai_acl/voiceai_custom"
)

usage() {
  cat <<'EOF'
Usage: install.sh [--dry-run] [--target DIR] [--app-user USER] [DIR]

  --target DIR     FreeSWITCH configuration directory (default /etc/freeswitch)
  --dry-run        print what would change, change nothing
  --app-user USER  system user of the VoiceAI app; owns the voiceai_generated/ directories
                   (default: $VOICEAI_APP_USER or "voiceai"; skipped when the user does not exist)

Environment:
  VOICEAI_ESL_PASSWORD   event socket password (12-128 characters: letters, digits, . _ ~ + -).
                         Unset: keep the one already installed, or generate one on first install.
EOF
}

die() { echo "install.sh: error: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --target) [ $# -ge 2 ] || die "--target needs a directory"; TARGET="$2"; shift 2 ;;
    --target=*) TARGET="${1#*=}"; shift ;;
    --app-user) [ $# -ge 2 ] || die "--app-user needs a user name"; APP_USER="$2"; shift 2 ;;
    --app-user=*) APP_USER="${1#*=}"; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) usage >&2; die "unknown option $1" ;;
    *) TARGET="$1"; shift ;;
  esac
done

TARGET="${TARGET%/}"
[ -d "$TARGET" ] || die "$TARGET does not exist"
[ -f "$TARGET/freeswitch.xml" ] || die "$TARGET has no freeswitch.xml: not a FreeSWITCH configuration directory"
[ -d "$CONF_SRC" ] || die "$CONF_SRC is missing (run the script from the VoiceAI checkout)"

STAMP="$(date +%Y%m%d-%H%M%S)"
BACKUP="$TARGET/voiceai-backup-$STAMP"
n=1
while [ -e "$BACKUP" ]; do BACKUP="$TARGET/voiceai-backup-$STAMP-$n"; n=$((n + 1)); done

CHANGES=0
NEED_RESTART=0
NEED_ESL_RELOAD=0
NEED_PROFILE_RESTART=0

note() { printf '  %-9s %s\n' "$1" "$2"; }

# Copy an existing target file into the backup tree, keeping its relative path.
backup() {
  local rel="$1"
  [ "$DRY_RUN" = 1 ] && return 0
  mkdir -p "$BACKUP/$(dirname "$rel")"
  cp -p "$TARGET/$rel" "$BACKUP/$rel"
}

# Write stdin-less content from a source file to target/rel atomically with a mode.
put_file() {
  local src="$1" rel="$2" mode="$3"
  local dst="$TARGET/$rel" tmp
  [ "$DRY_RUN" = 1 ] && return 0
  mkdir -p "$(dirname "$dst")"
  tmp="$(mktemp "$(dirname "$dst")/.voiceai-install.XXXXXX")"
  cp "$src" "$tmp"
  chmod "$mode" "$tmp"
  mv -f "$tmp" "$dst"
}

after_change() {
  local rel="$1"
  CHANGES=$((CHANGES + 1))
  case "$rel" in
    autoload_configs/event_socket.conf.xml) NEED_ESL_RELOAD=1 ;;
    autoload_configs/modules.conf.xml|autoload_configs/switch.conf.xml) NEED_RESTART=1 ;;
    sip_profiles/*.xml) NEED_PROFILE_RESTART=1 ;;
  esac
}

# Install src as target/rel unless identical; back up what it replaces.
install_file() {
  local src="$1" rel="$2" mode="${3:-0644}"
  if [ -f "$TARGET/$rel" ] && cmp -s "$src" "$TARGET/$rel"; then
    note unchanged "$rel"
    return 0
  fi
  if [ -e "$TARGET/$rel" ]; then
    note replace "$rel (previous copy in $(basename "$BACKUP")/)"
    backup "$rel"
  else
    note create "$rel"
  fi
  put_file "$src" "$rel" "$mode"
  after_change "$rel"
}

random_secret() {
  # 24 letters/digits; reads a fixed amount so no pipe is cut short under pipefail.
  head -c 96 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | cut -c1-24
}

# Value of an X-PRE-PROCESS "set" variable in a vars file ("" when absent).
read_var() {
  local file="$1" name="$2"
  [ -f "$file" ] || { echo ""; return 0; }
  sed -n "s/.*data=\"$name=\\([^\"]*\\)\".*/\\1/p" "$file" | head -n 1
}

echo "VoiceAI FreeSWITCH configuration -> $TARGET$([ "$DRY_RUN" = 1 ] && echo ' (dry run: nothing is changed)')"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# 1. Configuration files.
echo "Files:"
while IFS= read -r -d '' src; do
  install_file "$src" "${src#"$CONF_SRC"/}" 0644
done < <(find "$CONF_SRC" -type f -name '*.xml' -print0 | sort -z)

# 2. Secrets: voiceai_vars.xml, included from vars.xml.
VARS_FILE="$TARGET/voiceai_vars.xml"
esl_password="${VOICEAI_ESL_PASSWORD:-}"
if [ -z "$esl_password" ]; then
  esl_password="$(read_var "$VARS_FILE" voiceai_esl_password)"
  [ -n "$esl_password" ] || { esl_password="$(random_secret)"; ESL_GENERATED=1; }
fi
if ! [[ "$esl_password" =~ ^[A-Za-z0-9._~+-]{12,128}$ ]]; then
  die "VOICEAI_ESL_PASSWORD must be 12-128 characters of letters, digits and . _ ~ + -"
fi
[ "$esl_password" != "ClueCon" ] || die "refusing the stock ESL password ClueCon"
{
  echo "<!-- VoiceAI secrets, written by freeswitch_conf/install.sh; included from vars.xml."
  echo "     voiceai_esl_password must equal VOICEAI_ESL_PASSWORD of the VoiceAI app. -->"
  echo "<include>"
  echo "  <X-PRE-PROCESS cmd=\"set\" data=\"voiceai_esl_password=$esl_password\"/>"
  for ext in "${OPERATORS[@]}"; do
    pw="$(read_var "$VARS_FILE" "voiceai_operator_${ext}_password")"
    [ -n "$pw" ] || pw="$(random_secret)"
    echo "  <X-PRE-PROCESS cmd=\"set\" data=\"voiceai_operator_${ext}_password=$pw\"/>"
  done
  echo "</include>"
} > "$WORK/voiceai_vars.xml"
if [ -f "$VARS_FILE" ] && cmp -s "$WORK/voiceai_vars.xml" "$VARS_FILE"; then
  note unchanged "voiceai_vars.xml"
else
  if [ -f "$VARS_FILE" ]; then
    old_esl="$(read_var "$VARS_FILE" voiceai_esl_password)"
    note replace "voiceai_vars.xml (previous copy in $(basename "$BACKUP")/)"
    backup "voiceai_vars.xml"
    [ "$old_esl" = "$esl_password" ] || NEED_ESL_RELOAD=1
  else
    note create "voiceai_vars.xml (mode 0640)"
    NEED_ESL_RELOAD=1
  fi
  put_file "$WORK/voiceai_vars.xml" "voiceai_vars.xml" 0640
  if [ "$DRY_RUN" = 0 ] && [ "$(id -u)" = 0 ] && getent group freeswitch >/dev/null 2>&1; then
    chgrp freeswitch "$VARS_FILE"
  fi
  CHANGES=$((CHANGES + 1))
fi

if [ -f "$TARGET/vars.xml" ] && grep -qF 'data="voiceai_vars.xml"' "$TARGET/vars.xml"; then
  note unchanged "vars.xml (includes voiceai_vars.xml)"
elif [ -f "$TARGET/vars.xml" ]; then
  grep -q '<include>' "$TARGET/vars.xml" || die "$TARGET/vars.xml has no <include> line to add to"
  awk -v line="  $VARS_LINE" '{ print } !done && /<include>/ { print line; done = 1 }' \
    "$TARGET/vars.xml" > "$WORK/vars.xml"
  note update "vars.xml: include voiceai_vars.xml (previous copy in $(basename "$BACKUP")/)"
  backup "vars.xml"
  put_file "$WORK/vars.xml" "vars.xml" "$(stat -c '%a' "$TARGET/vars.xml")"
  CHANGES=$((CHANGES + 1)); NEED_ESL_RELOAD=1
else
  printf '<include>\n  %s\n</include>\n' "$VARS_LINE" > "$WORK/vars.xml"
  note create "vars.xml (only the voiceai_vars.xml include; stock variables are missing)"
  put_file "$WORK/vars.xml" "vars.xml" 0644
  CHANGES=$((CHANGES + 1)); NEED_ESL_RELOAD=1
fi

# 3. Directories: platform-owned (voiceai_generated) and administrator-owned (voiceai_custom).
echo "Directories:"
for rel in "${GENERATED_DIRS[@]}" "${CUSTOM_DIRS[@]}"; do
  if [ -d "$TARGET/$rel" ]; then
    note exists "$rel/"
  else
    note create "$rel/"
    [ "$DRY_RUN" = 1 ] || mkdir -p "$TARGET/$rel"
    CHANGES=$((CHANGES + 1))
  fi
done
if [ "$DRY_RUN" = 0 ] && [ "$(id -u)" = 0 ] && id "$APP_USER" >/dev/null 2>&1 \
    && getent group freeswitch >/dev/null 2>&1; then
  for rel in "${GENERATED_DIRS[@]}"; do
    # The app writes, FreeSWITCH reads through the group; setgid keeps new files in the group.
    chown "$APP_USER:freeswitch" "$TARGET/$rel"
    chmod 2750 "$TARGET/$rel"
  done
  note owner "voiceai_generated/ directories -> $APP_USER:freeswitch (2750)"
else
  note skip "ownership: give the VoiceAI app user write access to the voiceai_generated/ directories"
fi

# Seeds: installed only when absent, never replaced (the platform or the admin owns them after).
while IFS= read -r -d '' src; do
  rel="${src#"$SEED_SRC"/}"
  if [ -e "$TARGET/$rel" ]; then
    continue
  fi
  note seed "$rel"
  put_file "$src" "$rel" 0644
  CHANGES=$((CHANGES + 1))
done < <(find "$SEED_SRC" -type f -name '*.xml' -print0 | sort -z)

# 4. Stock demo users that would shadow the operator extensions (same id, password 1234).
for ext in "${OPERATORS[@]}"; do
  rel="directory/default/$ext.xml"
  if [ -f "$TARGET/$rel" ]; then
    note move "$rel -> $(basename "$BACKUP")/$rel (stock demo user; VoiceAI defines $ext)"
    backup "$rel"
    [ "$DRY_RUN" = 1 ] || rm -f "$TARGET/$rel"
    CHANGES=$((CHANGES + 1))
  fi
done
leftover="$(find "$TARGET/directory/default" -maxdepth 1 -name '10[01][0-9].xml' 2>/dev/null | wc -l)"
if [ "$leftover" -gt 0 ]; then
  echo "  warning   $leftover stock demo users (directory/default/10xx.xml) remain; with the default"
  echo "            password 1234 they are an open door: remove them unless you use them."
fi

# 5. Summary and next steps.
echo
if [ "$CHANGES" = 0 ]; then
  echo "Nothing to change: the configuration is already installed."
  exit 0
fi
if [ "$DRY_RUN" = 1 ]; then
  echo "Dry run: $CHANGES change(s) listed above were not made."
  exit 0
fi
[ -d "$BACKUP" ] && echo "Backup of replaced files: $BACKUP"
[ "${ESL_GENERATED:-0}" = 1 ] && echo "Generated an ESL password in $VARS_FILE: copy it into VOICEAI_ESL_PASSWORD of the VoiceAI app."
echo "Operator phone passwords (extensions ${OPERATORS[*]}) are in $VARS_FILE."
echo
echo "Apply the changes:"
echo "  fs_cli -x reloadxml"
echo "  fs_cli -x reloadacl"
echo "  fs_cli -x 'sofia profile external rescan'"
[ "$NEED_ESL_RELOAD" = 1 ] && echo "  fs_cli -x 'reload mod_event_socket'     # new event socket password/settings (drops ESL clients)"
[ "$NEED_PROFILE_RESTART" = 1 ] && echo "  fs_cli -x 'sofia profile external restart'; fs_cli -x 'sofia profile internal restart'   # profile settings changed (drops calls on them)"
[ "$NEED_RESTART" = 1 ] && echo "  systemctl restart freeswitch            # modules or core settings (RTP ports) changed"
echo "Check: fs_cli -x 'sofia status' ; fs_cli -x 'module_exists mod_audio_fork'"
echo "Voice prompts (test call, recording notice, after hours): .venv/bin/voiceai prompts render"
echo "  (writes Russian WAVs into VOICEAI_FS_SOUNDS_DIR, default /usr/share/freeswitch/sounds/voiceai)"
exit 0
