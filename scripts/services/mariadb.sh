#!/usr/bin/env bash
# Install and start MariaDB (10.11 on Debian bookworm) on 127.0.0.1:3306 with a ROW binlog and
# MariaDB GTIDs, ready for the mysql/mariadb source. Idempotent: safe to run any number of times,
# whether the server is stopped or already running. User root with an EMPTY password over TCP.
# No systemd is assumed: the server is started with `service` or, failing that, mysqld_safe.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

if ! command -v mariadbd >/dev/null && [ ! -x /usr/sbin/mariadbd ]; then
  apt_install mariadb-server mariadb-client
fi

conf=/etc/mysql/mariadb.conf.d/90-tideflow.cnf
mkdir -p "$(dirname "$conf")"
desired=$(cat <<CONF
[mariadbd]
bind-address = 127.0.0.1
port = 3306
server_id = 1
log_bin = mariadb-bin
binlog_format = ROW
binlog_row_image = FULL
# Without FULL row metadata the binlog carries no column names (UNKNOWN_COLn).
binlog_row_metadata = FULL
gtid_strict_mode = ON
# Long enough for a paused pipeline to resume, short enough not to fill a dev disk.
expire_logs_days = 3
max_connections = 300
max_allowed_packet = 64M
CONF
)
changed=0
if [ ! -f "$conf" ] || [ "$(cat "$conf")" != "$desired" ]; then
  echo "$desired" > "$conf"; changed=1
fi

alive() { mariadb-admin --protocol=socket -uroot ping >/dev/null 2>&1; }

start() {
  mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
  if ! service mariadb start >/dev/null 2>&1; then
    # No init script usable here: run the server in the background ourselves.
    (setsid mysqld_safe >/dev/null 2>&1 &)
  fi
}

stop() {
  service mariadb stop >/dev/null 2>&1 || mariadb-admin --protocol=socket -uroot shutdown || true
  local deadline=$((SECONDS + 60))
  while alive; do
    if [ $SECONDS -ge $deadline ]; then echo "mariadb did not stop in 60s" >&2; exit 1; fi
    sleep 0.5
  done
}

if alive; then
  [ "$changed" = 1 ] && { stop; start; }
else
  start
fi
wait_for "mariadb" 90 mariadb-admin --protocol=socket -uroot ping

# Root over TCP with an empty password (dev and tests only; the server listens on loopback).
mariadb --protocol=socket -uroot <<'SQL'
ALTER USER 'root'@'localhost' IDENTIFIED VIA mysql_native_password USING PASSWORD('')
  OR unix_socket;
CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '';
GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
FLUSH PRIVILEGES;
SQL

wait_for "mariadb tcp" 60 mariadb -h 127.0.0.1 -P 3306 -uroot -e 'select 1'
settings=$(mariadb -h 127.0.0.1 -P 3306 -uroot -N -B -e \
  "select concat(@@version, ' log_bin=', @@log_bin, ' binlog_format=', @@binlog_format,
    ' binlog_row_image=', @@binlog_row_image, ' gtid=', @@gtid_current_pos)")
echo "mariadb: mysql://root:@127.0.0.1:3306 ($settings)"
