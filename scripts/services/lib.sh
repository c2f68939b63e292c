# Shared helpers for the service scripts.
APT_UPDATED_FLAG=/tmp/.tideflow-apt-updated

apt_install() {
  if [ "$(id -u)" != 0 ]; then echo "need root to apt-get install $*" >&2; exit 1; fi
  if [ ! -f "$APT_UPDATED_FLAG" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq && touch "$APT_UPDATED_FLAG"
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# wait_for NAME SECONDS CMD... : poll CMD until it succeeds or the deadline passes.
wait_for() {
  local name=$1 secs=$2; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then echo "$name did not become ready in ${secs}s" >&2; return 1; fi
    sleep 0.5
  done
}
