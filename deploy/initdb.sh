#!/bin/sh
# Runs once, when the database volume is first created (the postgres image runs
# /docker-entrypoint-initdb.d/*). The service logs in as moodtrack_web, a member of
# moodtrack_app: the migration grants that role every table but UPDATE and DELETE on
# audit_events, so the audit trail is append-only for the service.
set -eu
psql -v ON_ERROR_STOP=1 -v web_password="$MOODTRACK_DB_PASSWORD" \
  --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<'SQL'
CREATE ROLE moodtrack_app NOLOGIN;
CREATE ROLE moodtrack_web LOGIN PASSWORD :'web_password' IN ROLE moodtrack_app;
SQL
