/* claim.c - claims due jobs in one statement that commits at once.
 *
 * DESIGN: the claim reads only rows it may take. Waiting jobs are indexed by (queue,
 * kind, priority, run_at, id) (jobs_ready_idx, sql/004), and the statement scans that
 * index once per (queue, kind) pair of this instance, leaving out paused queues
 * (runner.pause_queue): each scan is a LATERAL subquery that locks up to n rows in
 * (priority, run_at, id) order with FOR UPDATE SKIP LOCKED, so that concurrent instances
 * never wait on each other, never take the same job, and each goes on past the rows a
 * peer holds. A kind with a limit of its own (a worker kind: its free processes, $7) is
 * scanned for at most that many and capped at it across queues. The scans are merged by
 * (priority, run_at, id) and the first n turned into
 * leases: state 'running', attempt + 1, lease_owner, lease_expires_at from the database
 * clock. Rows a scan locked beyond the first n stay as they were (the lock ends with the
 * statement's transaction). A claim over P pairs costs P index descents plus the rows it
 * takes, whatever else the table holds. Jobs due later are 'scheduled' and not in that
 * index; the same statement promotes up to 1,000 of those whose time has come
 * and NOTIFYs their queues, so that the claim right after this one (this instance's or a
 * peer's) takes them. The statement commits immediately: from then on ownership is the
 * lease, renewed by the control loop, not a held row lock. max_attempts is fixed at the
 * first claim from the kind's setting when the job was enqueued without one. */
#include "claim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "util.h"

const char claim_sql[] =
    "WITH promoted AS ("
    "  UPDATE runner.jobs j SET state = 'available'"
    "    FROM (SELECT s.id FROM runner.jobs s"
    "           WHERE s.state = 'scheduled' AND s.run_at <= now()"
    "           ORDER BY s.run_at LIMIT 1000 FOR UPDATE SKIP LOCKED) due"
    "   WHERE j.id = due.id"
    "  RETURNING pg_notify('runner_jobs', j.queue)),"
    " picked AS ("
    "  SELECT p.id FROM ("
    "    SELECT c.id, c.priority, c.run_at, k.lim,"
    "           row_number() OVER (PARTITION BY k.name ORDER BY c.priority, c.run_at, c.id)"
    "             AS nth"
    "      FROM (SELECT unnest($1::text[]) EXCEPT SELECT q.name FROM runner.queues q"
    "             WHERE q.paused) AS q(name)"
    "      CROSS JOIN (SELECT * FROM unnest($2::text[], $7::int[]) AS k(name, lim)"
    "                   WHERE lim <> 0) k"
    "      CROSS JOIN LATERAL ("
    "        SELECT j.id, j.priority, j.run_at FROM runner.jobs j"
    "         WHERE j.state = 'available' AND j.queue = q.name AND j.kind = k.name"
    "           AND j.run_at <= now()"
    "         ORDER BY j.priority, j.run_at, j.id"
    "         LIMIT CASE WHEN k.lim > 0 AND k.lim < $3 THEN k.lim ELSE $3 END"
    "         FOR UPDATE SKIP LOCKED) c) p"
    "   WHERE p.lim < 0 OR p.nth <= p.lim"
    "   ORDER BY p.priority, p.run_at, p.id"
    "   LIMIT $3),"
    " waiting AS ("
    "  INSERT INTO runner.claim_waiters AS w (instance, queue)"
    "  SELECT $4::uuid, q FROM unnest($1::text[]) q WHERE (SELECT count(*) FROM picked) < $3"
    "  ON CONFLICT (queue, instance) DO NOTHING"
    "  RETURNING pg_notify('runner_jobs', w.queue)),"
    " busy AS ("
    "  DELETE FROM runner.claim_waiters w"
    "   WHERE w.instance = $4::uuid AND w.queue = ANY($1::text[])"
    "     AND (SELECT count(*) FROM picked) >= $3),"
    " claimed AS ("
    "  UPDATE runner.jobs j SET state = 'running', attempt = j.attempt + 1,"
    "         lease_owner = $4::uuid, lease_expires_at = now() + $5::bigint * interval '1 ms',"
    "         started_at = now(),"
    "         max_attempts = coalesce(j.max_attempts,"
    "             (SELECT nullif(k.m, 0) FROM unnest($2::text[], $6::int[]) AS k(kind, m)"
    "               WHERE k.kind = j.kind), 25)"
    "    WHERE j.id = ANY(ARRAY(SELECT id FROM picked))"
    "  RETURNING j.id, j.queue, j.kind, j.args::text, j.attempt, j.max_attempts,"
    "            j.priority, j.run_at)"
    " SELECT c.id, c.queue, c.kind, c.args, c.attempt, c.max_attempts, c.priority,"
    "        extract(epoch FROM now() - c.run_at)::float8"
    "   FROM claimed c"
    "  ORDER BY c.priority, c.run_at, c.id";

int claim_jobs(PGconn *conn, const claim_scope *scope, int limit, job ***out, int64_t timeout_ms,
               bool *broken, char *err, size_t errlen)
{
    char limit_s[16], lease_s[24];
    snprintf(limit_s, sizeof limit_s, "%d", limit);
    snprintf(lease_s, sizeof lease_s, "%lld", (long long)scope->lease_ms);
    char *queues = db_text_array(scope->queues, scope->nqueues);
    char *kinds = db_text_array(scope->kinds, scope->nkinds);
    char *maxes = db_int_array(scope->kind_max_attempts, scope->nkinds);
    int *none = NULL;
    if (!scope->kind_limit) {
        none = xcalloc(scope->nkinds, sizeof *none);
        for (size_t i = 0; i < scope->nkinds; i++)
            none[i] = -1;
    }
    char *limits = db_int_array(scope->kind_limit ? scope->kind_limit : none, scope->nkinds);
    const char *params[] = {queues, kinds, limit_s, scope->instance_id, lease_s, maxes, limits};

    PGresult *res =
        db_exec_prepared(conn, claim_sql, 7, params, timeout_ms, NULL, NULL, broken, err, errlen);
    free(queues);
    free(kinds);
    free(maxes);
    free(limits);
    free(none);
    *out = NULL;
    if (!res)
        return -1;
    int n = PQntuples(res);
    *out = xcalloc((size_t)n, sizeof **out);
    for (int i = 0; i < n; i++) {
        job *j = job_new(PQgetvalue(res, i, 1), PQgetvalue(res, i, 2), PQgetvalue(res, i, 3),
                         scope->instance_id);
        j->id = strtoll(PQgetvalue(res, i, 0), NULL, 10);
        j->attempt = (int)strtol(PQgetvalue(res, i, 4), NULL, 10);
        j->max_attempts = (int)strtol(PQgetvalue(res, i, 5), NULL, 10);
        j->priority = (int)strtol(PQgetvalue(res, i, 6), NULL, 10);
        j->waited_s = strtod(PQgetvalue(res, i, 7), NULL);
        (*out)[i] = j;
    }
    PQclear(res);
    return n;
}

int claim_unhandled_kinds(PGconn *conn, const claim_scope *scope, char ***kinds, int64_t timeout_ms,
                          bool *broken, char *err, size_t errlen)
{
    char *queues = db_text_array(scope->queues, scope->nqueues);
    char *known = db_text_array(scope->kinds, scope->nkinds);
    const char *params[] = {queues, known};
    PGresult *res =
        db_exec(conn,
                "SELECT DISTINCT w.kind FROM ("
                "  SELECT j.kind FROM runner.jobs j"
                "   WHERE j.state = 'available' AND j.run_at <= now() - interval '5 minutes'"
                "     AND j.queue = ANY($1::text[]) AND j.kind <> ALL($2::text[])"
                "   LIMIT 1000) w"
                " WHERE NOT EXISTS (SELECT 1 FROM runner.instances i"
                "                    WHERE i.state IN ('running', 'draining')"
                "                      AND w.kind = ANY(i.kinds))"
                " ORDER BY 1",
                2, params, timeout_ms, NULL, NULL, broken, err, errlen);
    free(queues);
    free(known);
    *kinds = NULL;
    if (!res)
        return -1;
    int n = PQntuples(res);
    *kinds = xcalloc((size_t)n, sizeof **kinds);
    for (int i = 0; i < n; i++)
        (*kinds)[i] = xstrdup(PQgetvalue(res, i, 0));
    PQclear(res);
    return n;
}
