/* claim.c - claims due jobs in one statement that commits at once.
 *
 * DESIGN: the CTE locks up to n due rows with FOR UPDATE SKIP LOCKED (so concurrent
 * instances never wait on each other nor take the same job), and the UPDATE turns them
 * into leases: state 'running', attempt + 1, lease_owner, lease_expires_at computed from
 * the database clock. The statement commits immediately: from then on ownership is the
 * lease, renewed by the control loop, not a held row lock. max_attempts is fixed at the
 * first claim from the kind's setting when the job was enqueued without one. Paused
 * queues (runner.pause_queue) are left out. */
#include "claim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "util.h"

static const char claim_sql[] =
    "WITH picked AS ("
    "  SELECT j.id FROM runner.jobs j"
    "   WHERE j.state = 'available' AND j.run_at <= now()"
    "     AND j.queue = ANY(ARRAY(SELECT unnest($1::text[])"
    "                             EXCEPT SELECT q.name FROM runner.queues q WHERE q.paused))"
    "     AND j.kind = ANY(ARRAY(SELECT k FROM unnest($2::text[], $7::int[]) AS l(k, n)"
    "                             WHERE n <> 0))"
    "   ORDER BY j.priority, j.run_at, j.id"
    "   LIMIT $3 FOR UPDATE SKIP LOCKED),"
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
    " SELECT id, queue, kind, args, attempt, max_attempts, priority,"
    "        extract(epoch FROM now() - run_at)::float8 FROM claimed"
    "  ORDER BY priority, run_at, id";

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
