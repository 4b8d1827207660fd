-- 004_claim_scale.sql: claims whose cost does not depend on the rows they must skip.
-- Applied by `runner migrate` inside one transaction; also works as `psql -1 -f`.
--
-- Before this migration the claim walked one index, (priority, run_at, id) WHERE state =
-- 'available', and read through the heap every waiting job it could not take: other
-- kinds, other queues, paused queues, and jobs due later at a better priority. Now:
--
-- * a job whose run_at is in the future is 'scheduled', not 'available' (a BEFORE
--   trigger decides, so enqueue, retries with backoff and plain INSERTs all agree); the
--   claim statement promotes due scheduled jobs, a batch at a time, and NOTIFYs their
--   queues so that the next claim takes them (runner.promote_scheduled() does the same
--   for admins and for tables no instance polls);
-- * the index of waiting jobs leads with (queue, kind), and the claim scans it once per
--   (queue, kind) pair the instance may run, each scan in (priority, run_at, id) order,
--   and merges the scans by priority: jobs of other kinds, other queues and paused queues
--   are never read.

-- ---------------------------------------------------------------------------------------
-- The 'scheduled' state

ALTER TABLE runner.jobs DROP CONSTRAINT jobs_state_check;
ALTER TABLE runner.jobs ADD CONSTRAINT jobs_state_check
    CHECK (state IN ('scheduled', 'available', 'running', 'completed', 'failed', 'cancelled'));

UPDATE runner.jobs SET state = 'scheduled' WHERE state = 'available' AND run_at > now();

-- schedule_future turns an available job whose run_at is still in the future into a
-- scheduled one. Its name sorts after jobs_cancel_requested (002), so a retry of a job
-- whose cancellation was requested has become 'cancelled' before this trigger looks.
CREATE FUNCTION runner.schedule_future() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.state := 'scheduled';
    RETURN NEW;
END
$$;

CREATE TRIGGER jobs_schedule_future BEFORE INSERT OR UPDATE OF state, run_at ON runner.jobs
    FOR EACH ROW WHEN (NEW.state = 'available' AND NEW.run_at > now())
    EXECUTE FUNCTION runner.schedule_future();

-- ---------------------------------------------------------------------------------------
-- Indexes

-- The claim: one scan per (queue, kind) pair, in the order the claim takes jobs.
CREATE INDEX jobs_ready_idx ON runner.jobs (queue, kind, priority, run_at, id)
    WHERE state = 'available';
DROP INDEX runner.jobs_claim_idx;

-- Promotion of due scheduled jobs, oldest first; also queue_summary's scheduled count.
CREATE INDEX jobs_scheduled_idx ON runner.jobs (run_at) WHERE state = 'scheduled';

-- At most one scheduled, available or running job per unique_key.
DROP INDEX runner.jobs_unique_key_idx;
CREATE UNIQUE INDEX jobs_unique_key_idx ON runner.jobs (unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('scheduled', 'available', 'running');

-- ---------------------------------------------------------------------------------------
-- Promotion

-- promote_scheduled makes up to `batch` scheduled jobs whose run_at has come available,
-- oldest first, skipping rows another session has locked, and wakes the instances of
-- their queues. The claim statement (runner/claim.c) does the same on every claim, so
-- this is for admins and for tests. Returns the number promoted.
CREATE FUNCTION runner.promote_scheduled(batch int DEFAULT 1000)
RETURNS int LANGUAGE plpgsql AS $$
DECLARE
    n int;
    woken int;
BEGIN
    WITH due AS (
        SELECT j.id FROM runner.jobs j
         WHERE j.state = 'scheduled' AND j.run_at <= now()
         ORDER BY j.run_at
         LIMIT batch FOR UPDATE SKIP LOCKED),
    promoted AS (
        UPDATE runner.jobs j SET state = 'available' FROM due WHERE j.id = due.id
        RETURNING j.queue),
    notified AS (
        SELECT pg_notify('runner_jobs', p.queue) FROM (SELECT DISTINCT queue FROM promoted) p)
    SELECT (SELECT count(*) FROM promoted), (SELECT count(*) FROM notified) INTO n, woken;
    RETURN n;
END
$$;

-- ---------------------------------------------------------------------------------------
-- Wake-up: NOTIFY only while an instance waits for one
--
-- A NOTIFY takes PostgreSQL's global notify lock from the commit's pre-commit step until
-- the transaction ends, WAL flush included, so every enqueue that notifies queues behind
-- every other one. Most enqueues need no wake-up: no instance runs, or every instance
-- is busy and claims again on its own. So the claim statement (runner/claim.c) keeps one
-- row per (instance, queue) here while the instance's last claim of that queue found fewer
-- jobs than it asked for (the instance then waits for a NOTIFY or its poll_interval), and
-- deletes the row when a claim was full (the instance claims again without waiting).
-- The enqueue trigger notifies only queues that have a row of a running instance.
-- When the claim inserts a row it also notifies itself, so that the instance claims once
-- more after its row is visible: an enqueue whose trigger ran just before the row
-- committed, and that committed just after the claim's snapshot, is found by that claim.
CREATE TABLE runner.claim_waiters (
    instance uuid NOT NULL,
    queue    text NOT NULL,
    since    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (queue, instance)
);

-- notify_jobs: as in 001, for the queues some running instance waits on; nothing to read
-- when no instance waits at all.
CREATE OR REPLACE FUNCTION runner.notify_jobs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM runner.claim_waiters) THEN
        RETURN NULL;
    END IF;
    PERFORM pg_notify('runner_jobs', q.queue)
       FROM (SELECT DISTINCT n.queue FROM new_jobs n
              WHERE n.state = 'available' AND n.run_at <= now()) q
      WHERE EXISTS (SELECT 1 FROM runner.claim_waiters w
                      JOIN runner.instances i ON i.id = w.instance AND i.state = 'running'
                     WHERE w.queue = q.queue);
    RETURN NULL;
END
$$;

-- ---------------------------------------------------------------------------------------
-- Completions per queue and minute
--
-- queue_summary's completed_last_hour counted every job completed within the hour, 2-3 s
-- with millions of them. Now rollup_completed() adds the completions of whole stretches
-- of time to completed_minutes, each finished row read once, and the view adds the
-- rolled-up minutes of the hour to an exact count of the completions after `through`.
-- prune() rolls up first, and keeps completed rows that are not rolled up yet.
CREATE TABLE runner.completed_minutes (
    minute    timestamptz NOT NULL,
    queue     text NOT NULL,
    completed bigint NOT NULL,
    PRIMARY KEY (minute, queue)
);

-- One row: completions with finished_at before `through` are in completed_minutes.
CREATE TABLE runner.rollup_progress (
    one     bool PRIMARY KEY DEFAULT true CHECK (one),
    through timestamptz NOT NULL
);
-- the last hour's completions are rolled up by the first calls, two minutes per call
INSERT INTO runner.rollup_progress (through)
VALUES (date_trunc('minute', now()) - interval '1 hour');

-- rollup_completed adds to completed_minutes the completions from `through` up to ten
-- seconds ago (a completion commits within its statement, and sql jobs stamp finished_at
-- with the clock at their fence), at most two minutes of them per call (it runs inside
-- prune on the control loop's connection), never from further back than the hour the
-- views show, and deletes minutes older than a day. One caller at a time; the others
-- return at once. Returns the number of (minute, queue) rows written.
CREATE FUNCTION runner.rollup_completed() RETURNS int LANGUAGE plpgsql AS $$
DECLARE
    since timestamptz;
    upto timestamptz;
    n int;
BEGIN
    SELECT p.through INTO since FROM runner.rollup_progress p;
    IF since IS NULL OR since >= now() - interval '20 seconds' THEN
        RETURN 0;
    END IF;
    SELECT p.through INTO since FROM runner.rollup_progress p FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    since := greatest(since, date_trunc('minute', now()) - interval '1 hour');
    upto := least(now() - interval '10 seconds', since + interval '2 minutes');
    INSERT INTO runner.completed_minutes AS m (minute, queue, completed)
    SELECT date_trunc('minute', j.finished_at), j.queue, count(*)
      FROM runner.jobs j
     WHERE j.state = 'completed' AND j.finished_at >= since AND j.finished_at < upto
     GROUP BY 1, 2
    ON CONFLICT (minute, queue) DO UPDATE SET completed = m.completed + excluded.completed;
    GET DIAGNOSTICS n = ROW_COUNT;
    UPDATE runner.rollup_progress SET through = upto;
    DELETE FROM runner.completed_minutes m WHERE m.minute < now() - interval '1 day';
    RETURN n;
END
$$;

-- rollup_through is rollup_progress.through. The views call it instead of reading the
-- table so that the planner, which evaluates stable functions when it estimates, knows
-- that few jobs completed after it (and plans no parallel scan for them).
CREATE FUNCTION runner.rollup_through() RETURNS timestamptz LANGUAGE sql STABLE AS $$
    SELECT p.through FROM runner.rollup_progress p
$$;

-- completed_per_minute: jobs completed per queue and minute over the last hour, from the
-- rollup and, after its `through`, from the jobs themselves.
CREATE VIEW runner.completed_per_minute AS
SELECT x.minute, x.queue, sum(x.completed)::bigint AS completed
  FROM (SELECT m.minute, m.queue, m.completed
          FROM runner.completed_minutes m
         WHERE m.minute >= date_trunc('minute', now()) - interval '59 minutes'
        UNION ALL
        SELECT date_trunc('minute', j.finished_at), j.queue, count(*)
          FROM runner.jobs j
         WHERE j.state = 'completed'
           AND j.finished_at >= runner.rollup_through()
           AND j.finished_at >= date_trunc('minute', now()) - interval '59 minutes'
         GROUP BY 1, 2) x
 GROUP BY 1, 2;

-- complete_held_job: as in 003, with finished_at the clock at the fence rather than the
-- start of the job's transaction, so that a long sql job is counted in the minute it
-- finished (and finished_at - started_at is its run time).
CREATE OR REPLACE FUNCTION runner.complete_held_job(job_id bigint, job_attempt int, owner uuid)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    UPDATE runner.jobs
       SET state = 'completed', finished_at = clock_timestamp(), lease_owner = NULL,
           lease_expires_at = NULL
     WHERE id = job_id AND attempt = job_attempt AND lease_owner = owner
       AND lease_expires_at IS NOT NULL;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'lease lost: job % attempt % is no longer held by instance %',
                        job_id, job_attempt, owner
              USING ERRCODE = 'RN001';
    END IF;
END
$$;

-- prune: as in 002; it rolls up completions first and keeps completed jobs of the last
-- hour that are not rolled up yet, and it also deletes the claim_waiters rows of
-- instances that no longer run.
CREATE OR REPLACE FUNCTION runner.prune(older_than interval, batch int DEFAULT 1000)
RETURNS int LANGUAGE plpgsql AS $$
DECLARE
    n int;
    rolled timestamptz;
BEGIN
    PERFORM runner.rollup_completed();
    SELECT p.through INTO rolled FROM runner.rollup_progress p;
    WITH old AS (
        SELECT j.id FROM runner.jobs j
         WHERE j.state IN ('completed', 'failed', 'cancelled')
           AND j.finished_at < now() - older_than
           AND (j.state <> 'completed' OR j.finished_at < rolled
                OR j.finished_at < now() - interval '1 hour')
         ORDER BY j.finished_at
         LIMIT batch FOR UPDATE SKIP LOCKED)
    DELETE FROM runner.jobs j USING old WHERE j.id = old.id;
    GET DIAGNOSTICS n = ROW_COUNT;

    WITH old AS (
        SELECT t.schedule, t.fire_at FROM runner.schedule_ticks t
         WHERE t.fire_at < now() - older_than
         ORDER BY t.fire_at
         LIMIT batch FOR UPDATE SKIP LOCKED)
    DELETE FROM runner.schedule_ticks t USING old
     WHERE t.schedule = old.schedule AND t.fire_at = old.fire_at;

    DELETE FROM runner.instances i
     WHERE i.state IN ('stopped', 'lost')
       AND coalesce(i.stopped_at, i.heartbeat_at) < now() - interval '7 days';

    DELETE FROM runner.claim_waiters w
     WHERE NOT EXISTS (SELECT 1 FROM runner.instances i
                        WHERE i.id = w.instance AND i.state = 'running');
    RETURN n;
END
$$;

-- ---------------------------------------------------------------------------------------
-- Functions that know the states

-- enqueue: as in 001, with the unique key also held by scheduled jobs; without a unique
-- key a plain INSERT, with no arbiter index to infer.
CREATE OR REPLACE FUNCTION runner.enqueue(kind text,
                                          args jsonb DEFAULT '{}',
                                          queue text DEFAULT 'default',
                                          priority int DEFAULT 0,
                                          run_at timestamptz DEFAULT now(),
                                          max_attempts int DEFAULT NULL,
                                          unique_key text DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    new_id bigint;
BEGIN
    IF enqueue.kind IS NULL OR enqueue.kind = '' THEN
        RAISE EXCEPTION 'job kind must not be empty' USING ERRCODE = '22023';
    END IF;
    IF enqueue.unique_key IS NULL THEN
        INSERT INTO runner.jobs AS j (kind, args, queue, priority, run_at, max_attempts)
        VALUES (enqueue.kind, coalesce(enqueue.args, '{}'), coalesce(enqueue.queue, 'default'),
                coalesce(enqueue.priority, 0), coalesce(enqueue.run_at, now()),
                enqueue.max_attempts)
        RETURNING j.id INTO new_id;
        RETURN new_id;
    END IF;
    LOOP
        INSERT INTO runner.jobs AS j (kind, args, queue, priority, run_at, max_attempts, unique_key)
        VALUES (enqueue.kind, coalesce(enqueue.args, '{}'), coalesce(enqueue.queue, 'default'),
                coalesce(enqueue.priority, 0), coalesce(enqueue.run_at, now()),
                enqueue.max_attempts, enqueue.unique_key)
        ON CONFLICT (unique_key)
           WHERE unique_key IS NOT NULL AND state IN ('scheduled', 'available', 'running')
        DO NOTHING
        RETURNING j.id INTO new_id;
        IF new_id IS NOT NULL THEN
            RETURN new_id;
        END IF;
        SELECT j.id INTO new_id FROM runner.jobs j
         WHERE j.unique_key = enqueue.unique_key
           AND j.state IN ('scheduled', 'available', 'running');
        IF new_id IS NOT NULL THEN
            RETURN new_id;
        END IF;
        -- the holder finished between the two statements: try again
    END LOOP;
END
$$;

-- cancel_job: as in 002; a scheduled job is cancelled at once, like an available one.
CREATE OR REPLACE FUNCTION runner.cancel_job(id bigint) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    st text;
BEGIN
    -- waits for a claim in flight, so the state seen here is the committed one
    SELECT j.state INTO st FROM runner.jobs j WHERE j.id = cancel_job.id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'job % does not exist', cancel_job.id USING ERRCODE = 'P0002';
    END IF;
    IF st IN ('scheduled', 'available') THEN
        UPDATE runner.jobs j SET state = 'cancelled', finished_at = now(),
               last_error = 'cancelled by admin',
               errors = j.errors || jsonb_build_array(jsonb_build_object(
                   'at', now(), 'attempt', j.attempt, 'outcome', 'cancelled',
                   'error', 'cancelled by admin'))
         WHERE j.id = cancel_job.id;
        RETURN true;
    ELSIF st = 'running' THEN
        UPDATE runner.jobs j SET cancel_requested_at = coalesce(j.cancel_requested_at, now())
         WHERE j.id = cancel_job.id;
        PERFORM pg_notify('runner_control', 'cancel:' || cancel_job.id);
        RETURN true;
    END IF;
    RETURN false;
END
$$;

-- retry_job: as in 002, with the unique key also held by scheduled jobs.
CREATE OR REPLACE FUNCTION runner.retry_job(id bigint) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    j runner.jobs;
    holder bigint;
BEGIN
    SELECT * INTO j FROM runner.jobs jb WHERE jb.id = retry_job.id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'job % does not exist', retry_job.id USING ERRCODE = 'P0002';
    END IF;
    IF j.state NOT IN ('failed', 'cancelled') THEN
        RETURN false;
    END IF;
    IF j.unique_key IS NOT NULL THEN
        SELECT jb.id INTO holder FROM runner.jobs jb
         WHERE jb.unique_key = j.unique_key AND jb.state IN ('scheduled', 'available', 'running');
        IF holder IS NOT NULL THEN
            RAISE EXCEPTION 'job % cannot be retried: job % holds its unique key "%"',
                retry_job.id, holder, j.unique_key
                USING ERRCODE = '23505', HINT = 'cancel or wait for that job first';
        END IF;
    END IF;
    BEGIN
        UPDATE runner.jobs jb SET state = 'available', attempt = 0, run_at = now(),
               finished_at = NULL, cancel_requested_at = NULL,
               errors = jb.errors || jsonb_build_array(jsonb_build_object(
                   'at', now(), 'attempt', jb.attempt, 'outcome', 'retried',
                   'error', 'retried by admin (was ' || jb.state || ')'))
         WHERE jb.id = retry_job.id;
    EXCEPTION WHEN unique_violation THEN
        -- a job with the same key was enqueued after the check above
        RAISE EXCEPTION 'job % cannot be retried: another available or running job holds '
                        'its unique key "%"', retry_job.id, j.unique_key
            USING ERRCODE = '23505', HINT = 'cancel or wait for that job first';
    END;
    PERFORM pg_notify('runner_jobs', j.queue);
    RETURN true;
END
$$;

-- ---------------------------------------------------------------------------------------
-- queue_summary: as in 002, the columns unchanged. available counts due jobs, whether
-- already promoted or still 'scheduled' with a run_at that has come; scheduled counts
-- jobs whose run_at is in the future; completed_last_hour adds the rolled-up minutes of
-- the hour (whole minutes: up to a minute more than an hour) to the completions after
-- the rollup's `through`.
CREATE OR REPLACE VIEW runner.queue_summary AS
WITH waiting AS (
    SELECT j.queue, j.attempt, j.run_at FROM runner.jobs j WHERE j.state = 'available'
    UNION ALL
    SELECT j.queue, j.attempt, j.run_at FROM runner.jobs j WHERE j.state = 'scheduled'),
avail AS (
    SELECT w.queue,
           count(*) FILTER (WHERE w.run_at <= now()) AS available,
           count(*) FILTER (WHERE w.run_at > now()) AS scheduled,
           count(*) FILTER (WHERE w.attempt > 0) AS retrying,
           min(w.run_at) FILTER (WHERE w.run_at <= now()) AS oldest_run_at
      FROM waiting w GROUP BY w.queue),
running AS (
    SELECT j.queue, count(*) AS running
      FROM runner.jobs j WHERE j.state = 'running' GROUP BY j.queue),
failed AS (
    SELECT j.queue, count(*) AS failed
      FROM runner.jobs j WHERE j.state = 'failed' GROUP BY j.queue),
done AS (
    SELECT x.queue, sum(x.completed)::bigint AS completed
      FROM (SELECT m.queue, m.completed
              FROM runner.completed_minutes m
             WHERE m.minute >= date_trunc('minute', now() - interval '1 hour')
            UNION ALL
            SELECT j.queue, count(*)
              FROM runner.jobs j
             WHERE j.state = 'completed'
               AND j.finished_at >= runner.rollup_through()
               AND j.finished_at > now() - interval '1 hour'
             GROUP BY j.queue) x
     GROUP BY x.queue),
names AS (
    SELECT queue FROM avail UNION SELECT queue FROM running
    UNION SELECT queue FROM failed UNION SELECT queue FROM done
    UNION SELECT q.name FROM runner.queues q)
SELECT n.queue,
       coalesce(a.available, 0) AS available,
       coalesce(a.scheduled, 0) AS scheduled,
       coalesce(r.running, 0) AS running,
       coalesce(a.retrying, 0) AS retrying,
       coalesce(f.failed, 0) AS failed,
       coalesce(d.completed, 0) AS completed_last_hour,
       now() - a.oldest_run_at AS oldest_waiting_age,
       coalesce(q.paused, false) AS paused
  FROM names n
  LEFT JOIN avail a ON a.queue = n.queue
  LEFT JOIN running r ON r.queue = n.queue
  LEFT JOIN failed f ON f.queue = n.queue
  LEFT JOIN done d ON d.queue = n.queue
  LEFT JOIN runner.queues q ON q.name = n.queue;

INSERT INTO runner.migrations (version, name) VALUES (4, 'claim_scale');
