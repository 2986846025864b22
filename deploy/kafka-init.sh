#!/bin/sh
# One-shot: create the platform's topics on the broker before any service starts.
# Idempotent (--if-not-exists), so every `docker compose up` may run it again.
# KAFKA_TOPICS: comma-separated names (loyalty_shared.topics.all_topics()).
set -eu

bootstrap="${KAFKA_BOOTSTRAP:?KAFKA_BOOTSTRAP is not set}"
topics="${KAFKA_TOPICS:?KAFKA_TOPICS is not set}"
partitions="${TOPIC_PARTITIONS:-6}"
replication="${TOPIC_REPLICATION_FACTOR:-1}"
kafka_topics="${KAFKA_HOME:-/opt/kafka}/bin/kafka-topics.sh"

old_ifs="$IFS"
IFS=','
# shellcheck disable=SC2086 # split on the commas on purpose
set -- $topics
IFS="$old_ifs"

for topic in "$@"; do
    "$kafka_topics" --bootstrap-server "$bootstrap" --create --if-not-exists \
        --topic "$topic" --partitions "$partitions" --replication-factor "$replication"
    echo "kafka-init: topic $topic ready ($partitions partitions)"
done
# for the log: partitions and leaders of what was just made (informational only)
pattern="$(printf '%s|' "$@" | sed 's/|$//; s/\./\\./g')"
"$kafka_topics" --bootstrap-server "$bootstrap" --describe --topic "$pattern" \
    || echo "kafka-init: could not describe the topics (they were created)" >&2
