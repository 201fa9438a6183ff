-- The demo tenant's data lives in its own database, read by a role that can only read.
-- herald refuses a data source whose role is a superuser or may run programs or touch
-- server files; the `herald` role that owns the control database is a superuser here.
CREATE ROLE demo_reader LOGIN PASSWORD 'demo_reader';
CREATE DATABASE demo_data;
\connect demo_data
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT CONNECT ON DATABASE demo_data TO demo_reader;
GRANT USAGE ON SCHEMA public TO demo_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO demo_reader;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO demo_reader;
