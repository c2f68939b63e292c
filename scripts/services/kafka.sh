#!/usr/bin/env bash
# Install and run a single-node Apache Kafka (KRaft) broker on 127.0.0.1 for dev, tests and CI.
#
#   kafka.sh [start]   install what is missing, (re)start when the config changed, wait, print
#   kafka.sh stop      stop the broker (SIGTERM, controlled shutdown; SIGKILL after 60 s)
#   kafka.sh status    exit 0 when the broker answers a metadata request
#
# Idempotent. Kafka has no Debian package: the broker jars and their dependencies come from
# Maven Central (org.apache.kafka:kafka_2.13, resolved by `mvn dependency:copy-dependencies`
# from a generated pom) into a cache folder that is reused when present. The broker runs with
# the same main classes as the official kafka-storage.sh / kafka-server-start.sh.
#
# Listeners:
#   PLAINTEXT://127.0.0.1:9092       clients (principal User:ANONYMOUS, a super user)
#   CONTROLLER://127.0.0.1:9093      KRaft controller quorum
#   SASL_PLAINTEXT://127.0.0.1:9094  SASL/PLAIN users admin/admin-secret (super user) and
#                                    alice/alice-secret (ordinary user) so tests can exercise
#                                    real ACL denials without touching PLAINTEXT clients.
# auto.create.topics.enable=false: the Kafka destination creates its topics itself with the
# configured partitions and replication, and a misspelt topic is an error, never a new topic.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

KAFKA_VERSION=${TIDEFLOW_KAFKA_VERSION:-3.9.1}
SCALA_VERSION=2.13
CACHE_DIR=${TIDEFLOW_KAFKA_CACHE:-/var/cache/tideflow/kafka-$KAFKA_VERSION}
STATE_DIR=${TIDEFLOW_KAFKA_STATE:-/var/lib/tideflow/kafka}
HEAP=${TIDEFLOW_KAFKA_HEAP:-512m}
LIBS=$CACHE_DIR/libs
PROPS=$STATE_DIR/server.properties
PIDFILE=$STATE_DIR/kafka.pid
LOGFILE=$STATE_DIR/kafka.log
DATA_DIR=$STATE_DIR/data

broker_pid() {
  [ -f "$PIDFILE" ] || return 1
  local pid; pid=$(cat "$PIDFILE")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

metadata_ok() {
  kcat -b 127.0.0.1:9092 -L -m 5 -J >/dev/null 2>&1
}

stop_broker() {
  local pid
  if pid=$(broker_pid); then
    kill -TERM "$pid"
    local deadline=$((SECONDS + 60))
    while kill -0 "$pid" 2>/dev/null; do
      if [ $SECONDS -ge $deadline ]; then kill -KILL "$pid" 2>/dev/null || true; fi
      sleep 0.2
    done
  fi
  rm -f "$PIDFILE"
}

case "${1:-start}" in
  stop) stop_broker; echo "kafka: stopped"; exit 0 ;;
  status) metadata_ok; exit $? ;;
  start) ;;
  *) echo "usage: $0 [start|stop|status]" >&2; exit 2 ;;
esac

command -v java >/dev/null || apt_install openjdk-17-jre-headless
command -v mvn >/dev/null || apt_install maven
command -v kcat >/dev/null || apt_install kcat

if [ ! -f "$CACHE_DIR/.complete" ]; then
  work=$(mktemp -d)
  # slf4j-reload4j gives the broker the same logging backend as the official distribution.
  cat > "$work/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.tideflow</groupId><artifactId>kafka-broker</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId>
      <artifactId>kafka_$SCALA_VERSION</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.slf4j</groupId>
      <artifactId>slf4j-reload4j</artifactId><version>1.7.36</version></dependency>
  </dependencies>
</project>
POM
  rm -rf "$LIBS"; mkdir -p "$LIBS"
  (cd "$work" && mvn -q -B dependency:copy-dependencies -DincludeScope=runtime \
      -DoutputDirectory="$LIBS")
  rm -rf "$work"
  touch "$CACHE_DIR/.complete"
fi

mkdir -p "$STATE_DIR" "$DATA_DIR"
cat > "$STATE_DIR/log4j.properties" <<'LOG4J'
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka=INFO
log4j.logger.org.apache.kafka=INFO
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.authorizer.logger=WARN
LOG4J

desired=$(cat <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:9093
listeners=PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093,SASL_PLAINTEXT://127.0.0.1:9094
advertised.listeners=PLAINTEXT://127.0.0.1:9092,SASL_PLAINTEXT://127.0.0.1:9094
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT
sasl.enabled.mechanisms=PLAIN
listener.name.sasl_plaintext.sasl.enabled.mechanisms=PLAIN
listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" password="admin-secret" user_admin="admin-secret" user_alice="alice-secret";
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:ANONYMOUS;User:admin
allow.everyone.if.no.acl.found=true
log.dirs=$DATA_DIR
num.partitions=1
default.replication.factor=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
min.insync.replicas=1
group.initial.rebalance.delay.ms=0
message.max.bytes=1048588
log.retention.hours=24
log.segment.bytes=67108864
delete.topic.enable=true
PROPS
)

changed=0
if [ ! -f "$PROPS" ] || [ "$(cat "$PROPS")" != "$desired" ]; then
  echo "$desired" > "$PROPS"; changed=1
fi

if [ ! -f "$DATA_DIR/meta.properties" ]; then
  cluster_id=$(java -cp "$LIBS/*" -Dlog4j.configuration="file:$STATE_DIR/log4j.properties" \
    kafka.tools.StorageTool random-uuid)
  java -cp "$LIBS/*" -Dlog4j.configuration="file:$STATE_DIR/log4j.properties" \
    kafka.tools.StorageTool format -t "$cluster_id" -c "$PROPS" --ignore-formatted >/dev/null
fi

if broker_pid >/dev/null && [ "$changed" = 1 ]; then
  stop_broker
fi
if ! broker_pid >/dev/null; then
  # setsid: the broker outlives the shell (and test process) that started it.
  setsid nohup java -Xms256m -Xmx"$HEAP" -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j.configuration="file:$STATE_DIR/log4j.properties" \
    -cp "$LIBS/*" kafka.Kafka "$PROPS" >>"$LOGFILE" 2>&1 </dev/null &
  echo $! > "$PIDFILE"
fi

if ! wait_for "kafka" 120 metadata_ok; then
  tail -n 40 "$LOGFILE" >&2
  exit 1
fi
echo "kafka $KAFKA_VERSION: bootstrap 127.0.0.1:9092 (PLAINTEXT), 127.0.0.1:9094 (SASL_PLAINTEXT," \
  "users admin/alice), KRaft node 1, log.dirs=$DATA_DIR, auto.create.topics.enable=false," \
  "pid $(cat "$PIDFILE"), log $LOGFILE"
