#!/bin/bash
# Runs once, on an empty data directory, as POSTGRES_USER (airflow): the monitoring metrics
# table's database (written by the pipeline and the exporter as airflow) and Grafana's
# read-only login to it. The password comes from the environment, never from this file.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v password="$MONITORING_DB_PASSWORD" <<'SQL'
CREATE DATABASE monitoring OWNER airflow;
CREATE ROLE grafana_reader LOGIN PASSWORD :'password';
SQL
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname monitoring <<'SQL'
GRANT CONNECT ON DATABASE monitoring TO grafana_reader;
GRANT USAGE ON SCHEMA public TO grafana_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO grafana_reader;
ALTER DEFAULT PRIVILEGES FOR ROLE airflow IN SCHEMA public GRANT SELECT ON TABLES TO grafana_reader;
SQL
