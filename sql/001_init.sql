-- 001_init.sql: the runner schema: jobs, instances, enqueue() and the wake-up NOTIFY.
-- Applied by `runner migrate` inside one transaction; also works as `psql -1 -f`.

CREATE SCHEMA IF NOT EXISTS runner;

CREATE TABLE IF NOT EXISTS runner.migrations (
    version    int PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE runner.instances (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    host         text NOT NULL,
    pid          int NOT NULL,
    version      text NOT NULL,
    state        text NOT NULL DEFAULT 'running'
                 CHECK (state IN ('running', 'draining', 'stopped', 'lost')),
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    stopped_at   timestamptz,
    concurrency  int NOT NULL,
    queues       text[] NOT NULL,
    kinds        text[] NOT NULL DEFAULT '{}',
    lease        interval NOT NULL
);

CREATE TABLE runner.jobs (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue            text NOT NULL DEFAULT 'default',
    kind             text NOT NULL,
    args             jsonb NOT NULL DEFAULT '{}',
    state            text NOT NULL DEFAULT 'available'
                     CHECK (state IN ('available', 'running', 'completed', 'failed', 'cancelled')),
    priority         int NOT NULL DEFAULT 0,
    run_at           timestamptz NOT NULL DEFAULT now(),
    attempt          int NOT NULL DEFAULT 0,
    -- NULL until the first claim, which fills in the kind's setting (or 25)
    max_attempts     int CHECK (max_attempts > 0),
    unique_key       text,
    lease_owner      uuid,
    lease_expires_at timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz,
    last_error       text,
    errors           jsonb NOT NULL DEFAULT '[]',
    result           jsonb,
    CHECK ((state = 'running') = (lease_owner IS NOT NULL AND lease_expires_at IS NOT NULL))
) WITH (fillfactor = 70,
        autovacuum_vacuum_scale_factor = 0.02,
        autovacuum_analyze_scale_factor = 0.02,
        autovacuum_vacuum_cost_delay = 1);

-- The claim query: WHERE state = 'available' ... ORDER BY priority, run_at, id.
CREATE INDEX jobs_claim_idx ON runner.jobs (priority, run_at, id) WHERE state = 'available';
-- Rescue of expired leases and "who is running what".
CREATE INDEX jobs_running_idx ON runner.jobs (lease_expires_at) WHERE state = 'running';
-- At most one available or running job per unique_key.
CREATE UNIQUE INDEX jobs_unique_key_idx ON runner.jobs (unique_key)
    WHERE unique_key IS NOT NULL AND state IN ('available', 'running');
-- Retention: finished jobs are pruned oldest first.
CREATE INDEX jobs_finished_idx ON runner.jobs (finished_at)
    WHERE state IN ('completed', 'failed', 'cancelled');

-- One NOTIFY per statement and queue: a hint that wakes idle instances at once.
CREATE FUNCTION runner.notify_jobs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('runner_jobs', q.queue)
       FROM (SELECT DISTINCT n.queue FROM new_jobs n
              WHERE n.state = 'available' AND n.run_at <= now()) q;
    RETURN NULL;
END
$$;

CREATE TRIGGER jobs_notify AFTER INSERT ON runner.jobs
    REFERENCING NEW TABLE AS new_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION runner.notify_jobs();

-- enqueue adds a job and returns its id. With a unique_key that an available or running
-- job already holds, it adds nothing and returns that job's id.
CREATE FUNCTION runner.enqueue(kind text,
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
    LOOP
        INSERT INTO runner.jobs AS j (kind, args, queue, priority, run_at, max_attempts, unique_key)
        VALUES (enqueue.kind, coalesce(enqueue.args, '{}'), coalesce(enqueue.queue, 'default'),
                coalesce(enqueue.priority, 0), coalesce(enqueue.run_at, now()),
                enqueue.max_attempts, enqueue.unique_key)
        ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND state IN ('available', 'running')
        DO NOTHING
        RETURNING j.id INTO new_id;
        IF new_id IS NOT NULL THEN
            RETURN new_id;
        END IF;
        SELECT j.id INTO new_id FROM runner.jobs j
         WHERE j.unique_key = enqueue.unique_key AND j.state IN ('available', 'running');
        IF new_id IS NOT NULL THEN
            RETURN new_id;
        END IF;
        -- the holder finished between the two statements: try again
    END LOOP;
END
$$;

INSERT INTO runner.migrations (version, name) VALUES (1, 'init');
