#!/bin/bash
# Runs once, when the Postgres data volume is empty (/docker-entrypoint-initdb.d):
# one database per service, each owned by its own login role, so a service can only
# reach its own tables. The passwords come from the container's environment.
set -eo pipefail  # no -u: the postgres entrypoint sources this file when it is not executable

create_service_database() {
    local database="$1" role="$2" password="$3"
    psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
        --set=database="$database" --set=role="$role" --set=password="$password" <<'SQL'
CREATE ROLE :"role" LOGIN PASSWORD :'password';
CREATE DATABASE :"database" OWNER :"role";
REVOKE ALL ON DATABASE :"database" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE :"database" TO :"role";
SQL
    echo "postgres-init: created database $database owned by $role"
}

create_service_database loyalty_points points "${POINTS_DB_PASSWORD:?POINTS_DB_PASSWORD is not set}"
create_service_database loyalty_segmentation segmentation "${SEGMENTATION_DB_PASSWORD:?SEGMENTATION_DB_PASSWORD is not set}"
create_service_database loyalty_feedback feedback "${FEEDBACK_DB_PASSWORD:?FEEDBACK_DB_PASSWORD is not set}"
create_service_database loyalty_webhooks webhooks "${WEBHOOKS_DB_PASSWORD:?WEBHOOKS_DB_PASSWORD is not set}"
