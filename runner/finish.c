/* finish.c - writes completions, failures and releases in one fenced statement.
 *
 * DESIGN: every outcome the control loop has collected goes into one UPDATE over
 * unnest()ed arrays, so a batch of N jobs costs one round trip and one commit. The WHERE
 * clause is the fence: a row changes only while it is still held by this instance's
 * lease at this attempt, so a job whose lease expired and was taken over is never
 * overwritten by its former owner (LEASE_FENCE in lease.h).
 * Released and handed-back jobs get their attempt back and a NOTIFY so an idle peer
 * claims them at once. */
#include "finish.h"

#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "job.h"
#include "lease.h"
#include "util.h"

static const char *const outcome_names[] = {
    [FINISH_COMPLETED] = "completed", [FINISH_RETRY] = "retry",
    [FINISH_DISCARD] = "discard",     [FINISH_CANCELLED] = "cancelled",
    [FINISH_RELEASED] = "released",   [FINISH_HANDED_BACK] = "handed_back",
};

static const char finish_sql[] =
    "WITH d AS ("
    "  SELECT * FROM unnest($2::bigint[], $3::int[], $4::text[], $5::text[], $6::bigint[])"
    "    AS d(id, attempt, outcome, error, delay_ms)),"
    " upd AS ("
    "  UPDATE runner.jobs j SET"
    "    state = CASE"
    "      WHEN d.outcome = 'completed' THEN 'completed'"
    "      WHEN d.outcome = 'cancelled' THEN 'cancelled'"
    "      WHEN d.outcome = 'discard' THEN 'failed'"
    "      WHEN d.outcome = 'retry' AND j.attempt >= j.max_attempts THEN 'failed'"
    "      ELSE 'available' END,"
    "    attempt = CASE WHEN d.outcome IN ('released', 'handed_back')"
    "                   THEN j.attempt - 1 ELSE j.attempt END,"
    "    run_at = CASE"
    "      WHEN d.outcome = 'retry' AND j.attempt < j.max_attempts"
    "        THEN now() + d.delay_ms * interval '1 ms'"
    "      WHEN d.outcome IN ('released', 'handed_back') THEN least(j.run_at, now())"
    "      ELSE j.run_at END,"
    "    finished_at = CASE"
    "      WHEN d.outcome IN ('completed', 'cancelled', 'discard')"
    "        OR (d.outcome = 'retry' AND j.attempt >= j.max_attempts) THEN now() END,"
    "    lease_owner = NULL, lease_expires_at = NULL,"
    "    last_error = CASE WHEN d.outcome IN ('retry', 'discard', 'cancelled')"
    "                      THEN d.error ELSE j.last_error END,"
    "    errors = CASE WHEN d.error IS NULL THEN j.errors"
    "      ELSE j.errors || jsonb_build_array(jsonb_build_object("
    "        'at', now(), 'attempt', j.attempt, 'error', d.error,"
    "        'instance', $1::text, 'outcome', d.outcome)) END"
    "   FROM d"
    "  WHERE " LEASE_FENCE
    "  RETURNING j.id, j.state, j.queue, d.outcome)"
    " SELECT u.id, u.state,"
    "   (SELECT count(pg_notify('runner_jobs', q.queue)) FROM"
    "      (SELECT DISTINCT upd.queue FROM upd"
    "        WHERE upd.outcome IN ('released', 'handed_back')) q)"
    "  FROM upd u";

typedef struct id_index {
    int64_t id;
    size_t index;
} id_index;

static int by_id(const void *a, const void *b)
{
    int64_t x = ((const id_index *)a)->id, y = ((const id_index *)b)->id;
    return (x > y) - (x < y);
}

static const char *state_name(const char *s)
{
    static const char *const states[] = {JOB_STATE_NAMES};
    for (size_t i = 0; i < ARRAY_LEN(states); i++)
        if (strcmp(states[i], s) == 0)
            return states[i];
    return "unknown";
}

db_call *finish_send(PGconn *conn, const char *instance_id, const finish_item *items, size_t n)
{
    int64_t *ids = xcalloc(n, sizeof *ids);
    int64_t *delays = xcalloc(n, sizeof *delays);
    int *attempts = xcalloc(n, sizeof *attempts);
    const char **outcomes = xcalloc(n, sizeof *outcomes);
    const char **errors = xcalloc(n, sizeof *errors);
    for (size_t i = 0; i < n; i++) {
        ids[i] = items[i].id;
        attempts[i] = items[i].attempt;
        outcomes[i] = outcome_names[items[i].outcome];
        errors[i] = items[i].error;
        delays[i] = items[i].delay_ms;
    }
    char *p_ids = db_int64_array(ids, n);
    char *p_att = db_int_array(attempts, n);
    char *p_out = db_text_array(outcomes, n);
    char *p_err = db_text_array(errors, n);
    char *p_del = db_int64_array(delays, n);
    const char *params[] = {instance_id, p_ids, p_att, p_out, p_err, p_del};
    const db_stmt stmt = {.sql = finish_sql, .nparams = 6, .params = params, .prepared = true};
    db_call *call = db_call_start(conn, &stmt, 1); /* libpq has copied the parameters */
    free(p_ids);
    free(p_att);
    free(p_out);
    free(p_err);
    free(p_del);
    free(ids);
    free(delays);
    free(attempts);
    free(outcomes);
    free(errors);
    return call;
}

void finish_read(PGresult *res, finish_item *items, size_t n)
{
    for (size_t i = 0; i < n; i++)
        items[i].new_state = NULL;
    /* match the returned rows to the items through an index sorted by id */
    id_index *order = xcalloc(n, sizeof *order);
    for (size_t i = 0; i < n; i++)
        order[i] = (id_index){.id = items[i].id, .index = i};
    qsort(order, n, sizeof *order, by_id);
    for (int r = 0; r < PQntuples(res); r++) {
        id_index key = {.id = strtoll(PQgetvalue(res, r, 0), NULL, 10)};
        const id_index *hit = bsearch(&key, order, n, sizeof *order, by_id);
        if (hit)
            items[hit->index].new_state = state_name(PQgetvalue(res, r, 1));
    }
    free(order);
    PQclear(res);
}
