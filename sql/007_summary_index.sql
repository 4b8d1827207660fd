-- 007_summary_index.sql - runner.queue_summary counts the waiting jobs from the indexes
-- alone.
--
-- The view splits the waiting jobs of each queue by due time and attempt. Its two scans,
-- of jobs_ready_idx ('available') and jobs_scheduled_idx ('scheduled'), had to visit the
-- heap row of every waiting job for the columns the indexes lacked (attempt; queue and
-- attempt): 100,000 waiting jobs cost the view about 170 ms, most of a dashboard page.
-- With those columns carried in the indexes (INCLUDE: stored, not part of the order, so
-- the claim and the promotion scan them as before) the view reads only index pages where
-- the visibility map allows it, as it does for vacuumed backlogs. The price is 8 more
-- bytes per index entry (one entry per job that becomes available or scheduled).
--
-- Rebuilding takes a SHARE lock on runner.jobs while the two partial indexes are built
-- (they hold the waiting jobs only, not the history): enqueues and claims wait that long.

CREATE INDEX jobs_ready_idx_007 ON runner.jobs (queue, kind, priority, run_at, id)
    INCLUDE (attempt) WHERE state = 'available';
DROP INDEX runner.jobs_ready_idx;
ALTER INDEX runner.jobs_ready_idx_007 RENAME TO jobs_ready_idx;

CREATE INDEX jobs_scheduled_idx_007 ON runner.jobs (run_at)
    INCLUDE (queue, attempt) WHERE state = 'scheduled';
DROP INDEX runner.jobs_scheduled_idx;
ALTER INDEX runner.jobs_scheduled_idx_007 RENAME TO jobs_scheduled_idx;

INSERT INTO runner.migrations (version, name) VALUES (7, 'summary_index');
