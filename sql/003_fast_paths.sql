-- 003_fast_paths.sql: server-side pieces that save round trips on the hot paths.
-- Applied by `runner migrate` inside one transaction; also works as `psql -1 -f`.

-- complete_held_job is the fence of a transactional job (the sql kind, C handlers
-- registered with runner_register_tx): it completes the job inside the job's own
-- transaction while the caller still holds the lease, and otherwise raises SQLSTATE
-- RN001, which rolls the whole transaction back. Because it raises instead of matching
-- nothing, the runner can send the job's statement, this call and the commit in one
-- round trip: the commit never happens after a lost lease. A lease_owner together with a
-- lease_expires_at implies state = 'running' (the CHECK on runner.jobs); the WHERE clause
-- leaves the state out so that the planner can only take the primary key, never a scan
-- of jobs_running_idx, whose statistics are often stale.
CREATE FUNCTION runner.complete_held_job(job_id bigint, job_attempt int, owner uuid)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    UPDATE runner.jobs
       SET state = 'completed', finished_at = now(), lease_owner = NULL, lease_expires_at = NULL
     WHERE id = job_id AND attempt = job_attempt AND lease_owner = owner
       AND lease_expires_at IS NOT NULL;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'lease lost: job % attempt % is no longer held by instance %',
                        job_id, job_attempt, owner
              USING ERRCODE = 'RN001';
    END IF;
END
$$;

INSERT INTO runner.migrations (version, name) VALUES (3, 'fast_paths');
