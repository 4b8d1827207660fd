-- 006_web.sql: the dashboard's roles and what they may do, plus the indexes its pages read.
-- Applied by `runner migrate` inside one transaction; also works as `psql -1 -f`.
--
-- runner_viewer reads the schema's tables and views; runner_operator is a viewer that may
-- also run the admin functions retry_job, cancel_job, pause_queue and resume_queue. Both
-- are NOLOGIN: grant them to the login role `runner web` connects as. Roles belong to the
-- cluster, not the database, so they are created only when missing (several databases of
-- one cluster may migrate at once).

DO $$
BEGIN
    BEGIN
        CREATE ROLE runner_viewer NOLOGIN;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN
        NULL;
    END;
    BEGIN
        CREATE ROLE runner_operator NOLOGIN;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN
        NULL;
    END;
END
$$;

GRANT runner_viewer TO runner_operator;

GRANT USAGE ON SCHEMA runner TO runner_viewer;
GRANT SELECT ON ALL TABLES IN SCHEMA runner TO runner_viewer;
-- tables and views of later migrations (run by the same owner) are readable too
ALTER DEFAULT PRIVILEGES IN SCHEMA runner GRANT SELECT ON TABLES TO runner_viewer;

-- The admin functions run with their owner's rights, so an operator needs no write
-- privilege on the tables: EXECUTE on these four is the whole grant. Functions are
-- executable by PUBLIC unless revoked, so that is revoked first; the schema owner and
-- superusers keep them. search_path is pinned, as for every SECURITY DEFINER function.
ALTER FUNCTION runner.retry_job(bigint) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION runner.cancel_job(bigint) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION runner.pause_queue(text) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION runner.resume_queue(text) SECURITY DEFINER SET search_path = pg_catalog, pg_temp;
REVOKE EXECUTE ON FUNCTION runner.retry_job(bigint), runner.cancel_job(bigint),
    runner.pause_queue(text), runner.resume_queue(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION runner.retry_job(bigint), runner.cancel_job(bigint),
    runner.pause_queue(text), runner.resume_queue(text) TO runner_operator;

-- The jobs page lists each state newest first (ORDER BY id DESC) with keyset pagination.
-- Failed and cancelled jobs are few among millions of completed ones; without these the
-- newest failed job could sit behind a scan of every completed job. Both are partial, so
-- the claim and the completion of a job never write them.
CREATE INDEX jobs_failed_id_idx ON runner.jobs (id) WHERE state = 'failed';
CREATE INDEX jobs_cancelled_id_idx ON runner.jobs (id) WHERE state = 'cancelled';

INSERT INTO runner.migrations (version, name) VALUES (6, 'web');
