-- 002_admin.sql: cron schedules, queue pause/resume, job cancel/retry, retention and the
-- admin views. Applied by `runner migrate` inside one transaction; also works as
-- `psql -1 -f`.

-- ---------------------------------------------------------------------------------------
-- Schedules
--
-- One row per schedule name. The definition columns are those of the instance that synced
-- last (see runner/schedule.c): an instance fires a schedule only while def_hash equals
-- the hash of its own definition, so instances of two releases never both fire it.
-- last_fire_at is the newest tick enqueued (or skipped by catch_up); ticks at or before
-- greatest(last_fire_at, defined_at) are never fired.
CREATE TABLE runner.schedules (
    name         text PRIMARY KEY,
    cron         text NOT NULL,
    timezone     text NOT NULL,
    kind         text NOT NULL,
    args         jsonb NOT NULL,
    queue        text NOT NULL,
    priority     int NOT NULL,
    catch_up     text NOT NULL CHECK (catch_up IN ('latest', 'all', 'none')),
    def_hash     text NOT NULL,
    defined_by   uuid,
    defined_at   timestamptz NOT NULL DEFAULT now(),
    last_fire_at timestamptz,
    last_job_id  bigint,
    next_fire_at timestamptz
);

-- Every tick that was enqueued, with its job. The primary key makes a second enqueue of
-- the same tick impossible, whatever the callers do.
CREATE TABLE runner.schedule_ticks (
    schedule    text NOT NULL,
    fire_at     timestamptz NOT NULL,
    job_id      bigint,
    enqueued_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (schedule, fire_at)
);
-- Retention of old ticks.
CREATE INDEX schedule_ticks_fire_at_idx ON runner.schedule_ticks (fire_at);

-- schedule_hash identifies a schedule definition; args are compared as jsonb, so key
-- order and white space do not count.
CREATE FUNCTION runner.schedule_hash(cron text, timezone text, kind text, args jsonb,
                                     queue text, priority int, catch_up text)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT md5(jsonb_build_array($1, $2, $3, $4, $5, $6, $7)::text)
$$;

-- schedule_fire enqueues the given ticks of one schedule, each exactly once, and returns
-- the ticks it enqueued with their jobs. The schedule row is locked first, so concurrent
-- callers take turns; a tick is skipped unless it is later than last_fire_at and
-- defined_at, and the tick's row in schedule_ticks is inserted in the same transaction as
-- its job. Nothing happens unless def_hash still matches the caller's definition.
-- advance_to moves last_fire_at forward without enqueueing (ticks skipped by catch_up)
-- and, when it did, is returned with a NULL job; next_fire_at is recorded for
-- runner.schedule_status.
CREATE FUNCTION runner.schedule_fire(schedule_name text, definition text,
                                     ticks timestamptz[], advance_to timestamptz,
                                     next_fire_at timestamptz)
RETURNS TABLE (tick timestamptz, job bigint) LANGUAGE plpgsql AS $$
DECLARE
    s runner.schedules;
    t timestamptz;
    floor_at timestamptz;
    fired_last timestamptz;
    new_id bigint;
    last_id bigint;
BEGIN
    SELECT * INTO s FROM runner.schedules sc WHERE sc.name = schedule_name FOR UPDATE;
    IF NOT FOUND OR s.def_hash <> definition THEN
        RETURN;
    END IF;
    floor_at := greatest(s.last_fire_at, s.defined_at);
    last_id := s.last_job_id;
    FOREACH t IN ARRAY coalesce(ticks, '{}') LOOP
        CONTINUE WHEN t <= floor_at;
        INSERT INTO runner.schedule_ticks AS st (schedule, fire_at)
        VALUES (schedule_name, t) ON CONFLICT DO NOTHING;
        CONTINUE WHEN NOT FOUND;
        new_id := runner.enqueue(s.kind, s.args, s.queue, s.priority, t);
        UPDATE runner.schedule_ticks st SET job_id = new_id
         WHERE st.schedule = schedule_name AND st.fire_at = t;
        floor_at := t;
        fired_last := t;
        last_id := new_id;
        tick := t;
        job := new_id;
        RETURN NEXT;
    END LOOP;
    IF advance_to > coalesce(floor_at, '-infinity') THEN
        fired_last := advance_to;
        tick := advance_to;
        job := NULL;
        RETURN NEXT;
    END IF;
    UPDATE runner.schedules sc
       SET last_fire_at = greatest(sc.last_fire_at, fired_last),
           last_job_id = last_id,
           next_fire_at = coalesce(schedule_fire.next_fire_at, sc.next_fire_at)
     WHERE sc.name = schedule_name;
END
$$;

-- ---------------------------------------------------------------------------------------
-- Queues: a row exists once a queue was paused or resumed; no row means not paused.
CREATE TABLE runner.queues (
    name       text PRIMARY KEY,
    paused     bool NOT NULL DEFAULT false,
    paused_at  timestamptz,
    resumed_at timestamptz
);

-- pause_queue stops every instance from claiming jobs of the queue (running jobs go on).
-- Returns false when it was paused already.
CREATE FUNCTION runner.pause_queue(queue text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO runner.queues AS q (name, paused, paused_at)
    VALUES (pause_queue.queue, true, now())
    ON CONFLICT (name) DO UPDATE SET paused = true, paused_at = now() WHERE NOT q.paused;
    RETURN FOUND;
END
$$;

-- resume_queue lets instances claim from the queue again and wakes them at once. Returns
-- false when it was not paused.
CREATE FUNCTION runner.resume_queue(queue text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    UPDATE runner.queues q SET paused = false, resumed_at = now()
     WHERE q.name = resume_queue.queue AND q.paused;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM pg_notify('runner_jobs', resume_queue.queue);
    RETURN true;
END
$$;

-- ---------------------------------------------------------------------------------------
-- Cancel and retry

-- Set by cancel_job() on a running job; its owner stops it and records 'cancelled'.
ALTER TABLE runner.jobs ADD COLUMN cancel_requested_at timestamptz;

-- A job whose cancellation was requested never becomes available again: whatever moves
-- it out of 'running' towards 'available' (a retry after failure, a release at shutdown,
-- the rescue of an expired lease) makes it 'cancelled' instead. The WHEN clause keeps
-- this off the path of every other update.
CREATE FUNCTION runner.apply_cancel_request() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.state := 'cancelled';
    NEW.finished_at := now();
    NEW.lease_owner := NULL;
    NEW.lease_expires_at := NULL;
    NEW.last_error := 'cancelled by admin';
    NEW.errors := NEW.errors || jsonb_build_array(jsonb_build_object(
        'at', now(), 'attempt', NEW.attempt, 'outcome', 'cancelled',
        'error', 'cancelled by admin'));
    RETURN NEW;
END
$$;

CREATE TRIGGER jobs_cancel_requested BEFORE UPDATE ON runner.jobs
    FOR EACH ROW WHEN (NEW.cancel_requested_at IS NOT NULL AND NEW.state = 'available')
    EXECUTE FUNCTION runner.apply_cancel_request();

-- cancel_job cancels an available job at once; for a running job it records the request
-- and NOTIFYs runner_control with 'cancel:<id>', and the owning instance stops the job
-- and records 'cancelled'. Returns true when it cancelled or requested, false when the job
-- had already finished (completed, failed or cancelled). An unknown id is an error.
CREATE FUNCTION runner.cancel_job(id bigint) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    st text;
BEGIN
    -- waits for a claim in flight, so the state seen here is the committed one
    SELECT j.state INTO st FROM runner.jobs j WHERE j.id = cancel_job.id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'job % does not exist', cancel_job.id USING ERRCODE = 'P0002';
    END IF;
    IF st = 'available' THEN
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

-- retry_job makes a failed or cancelled job available again now, with its attempts
-- reset; the history keeps its earlier errors and notes the retry. Returns false for a
-- job that is available, running or completed. An unknown id, or a unique_key that an
-- available or running job holds, is an error.
CREATE FUNCTION runner.retry_job(id bigint) RETURNS boolean LANGUAGE plpgsql AS $$
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
         WHERE jb.unique_key = j.unique_key AND jb.state IN ('available', 'running');
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
-- Retention

-- prune deletes up to `batch` finished jobs (completed, failed, cancelled) that finished
-- before now() - older_than, oldest first, skipping rows another session has locked, so
-- instances pruning at the same time share the work instead of waiting. It also deletes a
-- batch of schedule ticks older than older_than and instance rows stopped or lost for
-- more than 7 days. Returns the number of jobs deleted: call again while it equals batch.
CREATE FUNCTION runner.prune(older_than interval, batch int DEFAULT 1000)
RETURNS int LANGUAGE plpgsql AS $$
DECLARE
    n int;
BEGIN
    WITH old AS (
        SELECT j.id FROM runner.jobs j
         WHERE j.state IN ('completed', 'failed', 'cancelled')
           AND j.finished_at < now() - older_than
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
    RETURN n;
END
$$;

-- ---------------------------------------------------------------------------------------
-- Admin views. Each reads only rows that partial indexes select (available, running,
-- failed, finished within the hour), so they stay fast with millions of completed jobs.

-- Failed jobs per queue, and "what failed since ...".
CREATE INDEX jobs_failed_idx ON runner.jobs (queue, finished_at) WHERE state = 'failed';

-- queue_summary: one row per queue that has jobs waiting, running or failed, completed
-- jobs within the hour, or a row in runner.queues. available counts due jobs, scheduled
-- jobs whose run_at is in the future; retrying counts available jobs (due or not) that
-- have failed before; oldest_waiting_age is how long the oldest due job has waited.
CREATE VIEW runner.queue_summary AS
WITH avail AS (
    SELECT j.queue,
           count(*) FILTER (WHERE j.run_at <= now()) AS available,
           count(*) FILTER (WHERE j.run_at > now()) AS scheduled,
           count(*) FILTER (WHERE j.attempt > 0) AS retrying,
           min(j.run_at) FILTER (WHERE j.run_at <= now()) AS oldest_run_at
      FROM runner.jobs j WHERE j.state = 'available' GROUP BY j.queue),
running AS (
    SELECT j.queue, count(*) AS running
      FROM runner.jobs j WHERE j.state = 'running' GROUP BY j.queue),
failed AS (
    SELECT j.queue, count(*) AS failed
      FROM runner.jobs j WHERE j.state = 'failed' GROUP BY j.queue),
done AS (
    SELECT j.queue, count(*) AS completed
      FROM runner.jobs j
     WHERE j.state = 'completed' AND j.finished_at > now() - interval '1 hour'
     GROUP BY j.queue),
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

-- running_jobs: who is running what, for how long, and until when the lease holds.
CREATE VIEW runner.running_jobs AS
SELECT j.id, j.queue, j.kind, j.attempt, j.max_attempts, j.args,
       j.started_at, now() - j.started_at AS running_for,
       j.lease_owner AS instance, i.host, i.pid, i.state AS instance_state,
       j.lease_expires_at, j.cancel_requested_at
  FROM runner.jobs j
  LEFT JOIN runner.instances i ON i.id = j.lease_owner
 WHERE j.state = 'running';

-- stuck_jobs: running jobs whose lease has expired (their owner stopped renewing) and
-- that no instance has rescued yet. Rows here for longer than a heartbeat mean no live
-- instance is running.
CREATE VIEW runner.stuck_jobs AS
SELECT j.id, j.queue, j.kind, j.attempt, j.max_attempts,
       j.started_at, j.lease_expires_at, now() - j.lease_expires_at AS expired_for,
       j.lease_owner AS instance, i.host, i.pid, i.state AS instance_state,
       i.heartbeat_at AS instance_heartbeat_at
  FROM runner.jobs j
  LEFT JOIN runner.instances i ON i.id = j.lease_owner
 WHERE j.state = 'running' AND j.lease_expires_at < now();

-- instance_status: every registered instance; alive means running or draining with a
-- heartbeat younger than its lease.
CREATE VIEW runner.instance_status AS
SELECT i.id, i.host, i.pid, i.version, i.state,
       i.state IN ('running', 'draining') AND i.heartbeat_at > now() - i.lease AS alive,
       i.started_at, i.heartbeat_at, now() - i.heartbeat_at AS heartbeat_age, i.stopped_at,
       i.concurrency, i.queues, i.lease, coalesce(r.running, 0) AS running_jobs
  FROM runner.instances i
  LEFT JOIN (SELECT j.lease_owner, count(*) AS running FROM runner.jobs j
              WHERE j.state = 'running' GROUP BY j.lease_owner) r ON r.lease_owner = i.id;

-- schedule_status: each schedule's definition, when it last fired and will fire next,
-- and the state of the job its last tick enqueued.
CREATE VIEW runner.schedule_status AS
SELECT s.name AS schedule, s.cron, s.timezone, s.kind, s.queue, s.catch_up,
       s.last_fire_at, s.next_fire_at, s.last_job_id, j.state AS last_job_state,
       s.defined_at, s.defined_by,
       EXISTS (SELECT 1 FROM runner.instances i
                WHERE i.id = s.defined_by AND i.state IN ('running', 'draining')
                  AND i.heartbeat_at > now() - i.lease) AS definer_alive
  FROM runner.schedules s
  LEFT JOIN runner.jobs j ON j.id = s.last_job_id;

INSERT INTO runner.migrations (version, name) VALUES (2, 'admin');
