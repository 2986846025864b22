#!/bin/sh
# One-shot: the services' Kafka users, then the platform's topics, before any service starts.
# Idempotent (users altered, topics --if-not-exists), so every `docker compose up` may run it
# again. As the broker's admin (SASL PLAIN, BROKER_ADMIN_PASSWORD, deploy/kafka-start.sh).
# KAFKA_USERS: comma-separated user names; each one's password in <NAME>_KAFKA_PASSWORD
#   (POINTS_KAFKA_PASSWORD for points), stored by the broker as SCRAM-SHA-512.
# KAFKA_TOPICS: comma-separated names (loyalty_shared.topics.all_topics()).
set -eu

bootstrap="${KAFKA_BOOTSTRAP:?KAFKA_BOOTSTRAP is not set}"
topics="${KAFKA_TOPICS:?KAFKA_TOPICS is not set}"
users="${KAFKA_USERS:?KAFKA_USERS is not set}"
admin_password="${BROKER_ADMIN_PASSWORD:?BROKER_ADMIN_PASSWORD is not set}"
partitions="${TOPIC_PARTITIONS:-6}"
replication="${TOPIC_REPLICATION_FACTOR:-1}"
bin="${KAFKA_HOME:-/opt/kafka}/bin"
kafka_topics="$bin/kafka-topics.sh"

admin_config="${LOYALTY_CONFIG_DIR:-/tmp}/loyalty-admin.properties"
umask 077
cat > "$admin_config" <<PROPERTIES
security.protocol=SASL_PLAINTEXT
sasl.mechanism=PLAIN
sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" password="$admin_password";
PROPERTIES

old_ifs="$IFS"
IFS=','
for user in $users; do
    IFS="$old_ifs"
    variable="$(printf '%s' "$user" | tr 'a-z-' 'A-Z_')_KAFKA_PASSWORD"
    password="$(printenv "$variable" || true)"
    if [ -z "$password" ]; then
        echo "kafka-init: $variable is not set (the password of Kafka user $user)" >&2
        exit 1
    fi
    "$bin/kafka-configs.sh" --bootstrap-server "$bootstrap" --command-config "$admin_config" \
        --alter --entity-type users --entity-name "$user" \
        --add-config "SCRAM-SHA-512=[iterations=8192,password=$password]"
    echo "kafka-init: user $user ready (SCRAM-SHA-512)"
done
IFS=','
# shellcheck disable=SC2086 # split on the commas on purpose
set -- $topics
IFS="$old_ifs"

for topic in "$@"; do
    "$kafka_topics" --bootstrap-server "$bootstrap" --command-config "$admin_config" \
        --create --if-not-exists \
        --topic "$topic" --partitions "$partitions" --replication-factor "$replication"
    echo "kafka-init: topic $topic ready ($partitions partitions)"
done
# for the log: partitions and leaders of what was just made (informational only)
pattern="$(printf '%s|' "$@" | sed 's/|$//; s/\./\\./g')"
"$kafka_topics" --bootstrap-server "$bootstrap" --command-config "$admin_config" \
    --describe --topic "$pattern" \
    || echo "kafka-init: could not describe the topics (they were created)" >&2
