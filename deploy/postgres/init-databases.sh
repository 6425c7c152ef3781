#!/bin/bash
# Run once by the postgres image on an empty volume (/docker-entrypoint-initdb.d).
# One role and one database per service: a service can reach no other service's tables.
# Temporal gets its own role and its two databases (the temporal-schema job creates its tables).
set -euo pipefail

create_owned_database() {
  local role="$1" password="$2"
  shift 2
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -v role="$role" -v password="$password" <<'SQL'
CREATE ROLE :"role" LOGIN PASSWORD :'password';
SQL
  local db
  for db in "$@"; do
    psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
      -v role="$role" -v db="$db" <<'SQL'
CREATE DATABASE :"db" OWNER :"role";
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
SQL
  done
}

create_owned_database prospecting "$PROSPECTING_DB_PASSWORD" prospecting
create_owned_database outreach "$OUTREACH_DB_PASSWORD" outreach
create_owned_database deals "$DEALS_DB_PASSWORD" deals
create_owned_database referrals "$REFERRALS_DB_PASSWORD" referrals
create_owned_database temporal "$TEMPORAL_DB_PASSWORD" temporal temporal_visibility
