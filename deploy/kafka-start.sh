#!/bin/sh
# The kafka container's entrypoint: SASL on the broker's listener, then the image's own start.
# Writes, from BROKER_ADMIN_PASSWORD (never into server.properties):
#   - the broker's JAAS file: PLAIN for the broker itself and the admin tools (user "admin"),
#     SCRAM for the services (their users are made by kafka-init.sh, stored by the broker);
#   - /tmp/loyalty-admin.properties: the admin's client settings (the healthcheck uses them).
# The apache/kafka image turns KAFKA_* variables into server.properties, but drops any value
# holding "=", so a JAAS configuration cannot be passed that way: hence this file.
set -eu

password="${BROKER_ADMIN_PASSWORD:?BROKER_ADMIN_PASSWORD is not set (see deploy/README.md)}"
# (LOYALTY_CONFIG_DIR and BROKER_RUN: for tests/test_compose.py, which runs this script)
config_dir="${LOYALTY_CONFIG_DIR:-/tmp}"
jaas="$config_dir/loyalty-broker-jaas.conf"
umask 077
cat > "$jaas" <<JAAS
KafkaServer {
  org.apache.kafka.common.security.plain.PlainLoginModule required
    username="admin" password="$password" user_admin="$password";
  org.apache.kafka.common.security.scram.ScramLoginModule required;
};
JAAS
cat > "$config_dir/loyalty-admin.properties" <<PROPERTIES
security.protocol=SASL_PLAINTEXT
sasl.mechanism=PLAIN
sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" password="$password";
PROPERTIES
export KAFKA_OPTS="${KAFKA_OPTS:-} -Djava.security.auth.login.config=$jaas"
exec "${BROKER_RUN:-/etc/kafka/docker/run}" "$@"
