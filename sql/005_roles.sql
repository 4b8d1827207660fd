-- 005_roles.sql: least privilege. Two NOLOGIN roles that an operator grants to login roles:
--   runner_worker    what `runner run`, `runner enqueue` and `runner status` need: read and
--                    write the rows of the runner's tables, call its functions; no DDL, no
--                    TRUNCATE, nothing outside schema runner (the tables a sql kind writes
--                    are the application's to grant)
--   runner_enqueuer  runner.enqueue() and nothing else: it runs as the schema owner
--                    (SECURITY DEFINER), so the role needs no right on runner.jobs
-- Roles belong to the cluster, not the database: they may exist already (another database,
-- or an administrator created them because the schema owner lacks CREATEROLE), and two
-- databases may be migrated at once; either way nothing is created twice.
-- Applied by `runner migrate` inside one transaction; also works as `psql -1 -f`.

DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['runner_worker', 'runner_enqueuer'] LOOP
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = r) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', r);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL; -- a migration of another database created it meanwhile
            END;
        END IF;
    END LOOP;
END
$$;

-- Nobody else reaches into the schema; functions are executable by PUBLIC by default, and
-- the admin functions (cancel_job, retry_job, prune, pause_queue, ...) are for the owner
-- and runner_operator, so EXECUTE is granted per role instead.
REVOKE ALL ON SCHEMA runner FROM PUBLIC;
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA runner FROM PUBLIC;

GRANT USAGE ON SCHEMA runner TO runner_worker, runner_enqueuer;

-- runner_worker: every table and view of the schema as it is now (including those of
-- migrations before this one), and those later migrations create (default privileges of
-- the role that runs the migrations: the schema owner).
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA runner TO runner_worker;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA runner TO runner_worker;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA runner TO runner_worker;
ALTER DEFAULT PRIVILEGES IN SCHEMA runner
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO runner_worker;
ALTER DEFAULT PRIVILEGES IN SCHEMA runner GRANT USAGE, SELECT ON SEQUENCES TO runner_worker;
ALTER DEFAULT PRIVILEGES IN SCHEMA runner GRANT EXECUTE ON FUNCTIONS TO runner_worker;
-- new functions are not executable by PUBLIC either
ALTER DEFAULT PRIVILEGES IN SCHEMA runner REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
-- the schema's history is the owner's to write
REVOKE INSERT, UPDATE, DELETE ON runner.migrations FROM runner_worker;

-- runner_enqueuer: enqueue() runs with its owner's rights, its search_path pinned so that
-- a caller's objects cannot stand in for the ones it uses. Every overload, so that a
-- signature an earlier migration added is covered too.
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN SELECT p.oid::regprocedure
               FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
              WHERE n.nspname = 'runner' AND p.proname = 'enqueue' LOOP
        EXECUTE format('ALTER FUNCTION %s SECURITY DEFINER SET search_path = pg_catalog, runner, pg_temp', f);
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO runner_enqueuer', f);
    END LOOP;
END
$$;

INSERT INTO runner.migrations (version, name) VALUES (5, 'roles');
