/* lease.c - instance heartbeats, lease renewal, and rescue of expired leases.
 *
 * DESIGN: a lease is (lease_owner, lease_expires_at) on the job row, computed with the
 * database clock only, so clock skew between machines cannot make two owners. An
 * instance renews exactly the jobs it holds in memory, fenced on (id, attempt, owner,
 * lease: LEASE_FENCE), together with its own heartbeat, in one statement. A job missing from the
 * RETURNING list is no longer ours. Any live instance rescues leases that expired: the
 * owner died, so the attempt stays charged and a job that keeps killing its runner ends
 * up failed rather than looping forever. */
#include "lease.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "db.h"
#include "util.h"

int lease_register(PGconn *conn, instance_info *inst, bool *broken, char *err, size_t errlen)
{
    char host[256] = "unknown";
    gethostname(host, sizeof host - 1);
    char pid[16], conc[16], lease[24];
    snprintf(pid, sizeof pid, "%d", (int)getpid());
    snprintf(conc, sizeof conc, "%d", inst->concurrency);
    snprintf(lease, sizeof lease, "%lld", (long long)inst->lease_ms);
    char *queues = db_text_array(inst->queues, inst->nqueues);
    char *kinds = db_text_array(inst->kinds, inst->nkinds);
    const char *params[] = {inst->id[0] ? inst->id : NULL,
                            host,
                            pid,
                            RUNNER_VERSION,
                            inst->state,
                            conc,
                            queues,
                            kinds,
                            lease};
    PGresult *res =
        db_exec(conn,
                "INSERT INTO runner.instances AS i"
                "  (id, host, pid, version, state, concurrency, queues, kinds, lease)"
                " VALUES (coalesce($1::uuid, gen_random_uuid()), $2, $3::int, $4, $5, $6::int,"
                "         $7::text[], $8::text[], $9::bigint * interval '1 ms')"
                " ON CONFLICT (id) DO UPDATE SET state = excluded.state, heartbeat_at = now(),"
                "   concurrency = excluded.concurrency, queues = excluded.queues,"
                "   kinds = excluded.kinds"
                " RETURNING i.id",
                9, params, inst->timeout_ms, NULL, NULL, broken, err, errlen);
    free(queues);
    free(kinds);
    if (!res)
        return -1;
    snprintf(inst->id, sizeof inst->id, "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    return 0;
}

int lease_set_state(PGconn *conn, const instance_info *inst, bool *broken, char *err, size_t errlen)
{
    const char *params[] = {inst->id, inst->state};
    PGresult *res = db_exec(conn,
                            "UPDATE runner.instances SET state = $2, heartbeat_at = now(),"
                            " stopped_at = CASE WHEN $2 = 'stopped' THEN now() END"
                            " WHERE id = $1::uuid",
                            2, params, inst->timeout_ms, NULL, NULL, broken, err, errlen);
    if (!res)
        return -1;
    PQclear(res);
    return 0;
}

int lease_renew(PGconn *conn, const instance_info *inst, const int64_t *ids, const int *attempts,
                size_t n, bool *renewed, bool *cancel_requested, bool *instance_missing,
                bool *broken, char *err, size_t errlen)
{
    char lease[24];
    snprintf(lease, sizeof lease, "%lld", (long long)inst->lease_ms);
    char *p_ids = db_int64_array(ids, n);
    char *p_att = db_int_array(attempts, n);
    const char *params[] = {inst->id, p_ids, p_att, lease, inst->state};
    PGresult *res = db_exec_prepared(
        conn,
        "WITH hb AS ("
        "  UPDATE runner.instances SET heartbeat_at = now(), state = $5"
        "   WHERE id = $1::uuid RETURNING 1),"
        " renewed AS ("
        "  UPDATE runner.jobs j SET lease_expires_at = now() + $4::bigint * interval '1 ms'"
        "    FROM unnest($2::bigint[], $3::int[]) AS d(id, attempt)"
        "   WHERE " LEASE_FENCE
        "  RETURNING j.id, j.cancel_requested_at IS NOT NULL AS cancel)"
        " SELECT (SELECT count(*) FROM hb), renewed.id, renewed.cancel"
        "   FROM (SELECT 1) one"
        "   LEFT JOIN renewed ON true",
        5, params, inst->timeout_ms, NULL, NULL, broken, err, errlen);
    free(p_ids);
    free(p_att);
    if (!res)
        return -1;
    for (size_t i = 0; i < n; i++)
        renewed[i] = cancel_requested[i] = false;
    *instance_missing = PQntuples(res) > 0 && strcmp(PQgetvalue(res, 0, 0), "0") == 0;
    for (int r = 0; r < PQntuples(res); r++) {
        if (PQgetisnull(res, r, 1))
            continue;
        int64_t id = strtoll(PQgetvalue(res, r, 1), NULL, 10);
        bool cancel = strcmp(PQgetvalue(res, r, 2), "t") == 0;
        for (size_t i = 0; i < n; i++)
            if (ids[i] == id) {
                renewed[i] = true;
                cancel_requested[i] = cancel;
            }
    }
    PQclear(res);
    return 0;
}

int lease_rescue(PGconn *conn, const instance_info *inst, lease_rescued_fn each, void *arg,
                 bool *broken, char *err, size_t errlen)
{
    const char *params[] = {inst->id};
    PGresult *res = db_exec(
        conn,
        "WITH lost AS ("
        "  UPDATE runner.instances SET state = 'lost'"
        "   WHERE state IN ('running', 'draining') AND id <> $1::uuid"
        "     AND heartbeat_at < now() - lease"
        "  RETURNING id),"
        " expired AS ("
        "  SELECT id FROM runner.jobs"
        "   WHERE state = 'running' AND lease_expires_at < now()"
        "   ORDER BY lease_expires_at LIMIT 1000 FOR UPDATE SKIP LOCKED),"
        " rescued AS ("
        "  UPDATE runner.jobs j SET"
        "    state = CASE WHEN j.attempt >= j.max_attempts THEN 'failed' ELSE 'available' END,"
        "    run_at = now(), lease_owner = NULL, lease_expires_at = NULL,"
        "    finished_at = CASE WHEN j.attempt >= j.max_attempts THEN now() END,"
        "    last_error = 'lease expired: instance ' || j.lease_owner || ' stopped renewing',"
        "    errors = j.errors || jsonb_build_array(jsonb_build_object("
        "      'at', now(), 'attempt', j.attempt, 'outcome', 'rescued',"
        "      'error', 'lease expired: instance ' || j.lease_owner || ' stopped renewing',"
        "      'instance', $1::text))"
        "    FROM expired WHERE j.id = expired.id"
        "  RETURNING j.id, j.state, j.queue, j.kind)"
        " SELECT g.queue, g.kind, g.n, (SELECT count(*) FROM lost),"
        "   (SELECT count(pg_notify('runner_jobs', q.queue))"
        "      FROM (SELECT DISTINCT queue FROM rescued WHERE state = 'available') q)"
        "   FROM (SELECT 1) one"
        "   LEFT JOIN (SELECT queue, kind, count(*) AS n FROM rescued GROUP BY 1, 2) g ON true",
        1, params, inst->timeout_ms, NULL, NULL, broken, err, errlen);
    if (!res)
        return -1;
    int total = 0;
    if (PQnfields(res) != 5) {
        PQclear(res);
        return errf(err, errlen, "could not rescue expired leases: got %d fields, expected 5",
                    PQnfields(res));
    }
    for (int i = 0; i < PQntuples(res); i++) {
        if (PQgetisnull(res, i, 2))
            continue; /* the one row of a rescue that found nothing */
        int n = (int)strtol(PQgetvalue(res, i, 2), NULL, 10);
        total += n;
        if (each)
            each(arg, PQgetvalue(res, i, 0), PQgetvalue(res, i, 1), n);
    }
    PQclear(res);
    return total;
}
