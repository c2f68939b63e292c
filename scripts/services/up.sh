#!/usr/bin/env bash
# Install and start every service used by tests and local development (idempotent).
set -euo pipefail
here=$(dirname "$0")
for svc in ${TIDEFLOW_SERVICES:-postgres kafka mariadb}; do
  bash "$here/$svc.sh"
done
