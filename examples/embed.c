/* embed.c - a program embedding runner: a transactional handler (exactly once), a plain one
 * (at least once), jobs enqueued in the program's own transactions. After `runner migrate`:
 * embed [DATABASE_URL] (else $RUNNER_DATABASE_URL) works jobs until SIGTERM or SIGINT. */
#include <pthread.h>
#include <runner.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* A kinds entry without command or sql holds the settings of a registered handler. */
static const char config[] = "worker: {concurrency: 4, poll_interval: 500ms}\n"
                             "shutdown: {grace: 5s}\n"
                             "kinds: {ledger: {timeout: 10s, max_attempts: 5}}\n";

/* sql runs a statement with at most one parameter and reports its error. */
static int sql(PGconn *conn, const char *statement, const char *param)
{
    PGresult *res = PQexecParams(conn, statement, param != NULL, NULL, &param, NULL, NULL, 0);
    int ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    if (!ok)
        fprintf(stderr, "embed: %s: %s", statement, PQerrorMessage(conn));
    PQclear(res);
    return ok ? 0 : -1;
}

/* ledger writes through the job's own transaction, which the runner commits together
 * with the completion, or rolls back (failure, timeout, lost lease). Never COMMIT here. */
static runner_outcome ledger(runner_ctx *ctx, const runner_job *job, void *userdata)
{
    (void)userdata;
    PGconn *conn = runner_ctx_conn(ctx);
    if (sql(conn, "INSERT INTO ledger VALUES ($1)", job->args) < 0) {
        runner_ctx_set_error(ctx, PQerrorMessage(conn)); /* kept in the job's errors */
        return RUNNER_JOB_RETRY;
    }
    return RUNNER_JOB_SUCCESS;
}

/* log_job needs no database (runner_ctx_conn is NULL for plain handlers). */
static runner_outcome log_job(runner_ctx *ctx, const runner_job *job, void *userdata)
{
    (void)ctx, (void)userdata;
    printf("log job %lld: %s\n", (long long)job->id, job->args);
    fflush(stdout);
    return RUNNER_JOB_SUCCESS;
}

/* place_order adds an order and its two jobs in one transaction, then ends it with end
 * (COMMIT or ROLLBACK): the jobs exist exactly when the order does. */
static int place_order(PGconn *conn, const char *item, const char *end)
{
    char err[RUNNER_ERR_LEN] = "", args[64];
    int64_t id;
    snprintf(args, sizeof args, "{\"item\": \"%s\"}", item);
    if (sql(conn, "BEGIN", NULL) < 0 || sql(conn, "INSERT INTO orders VALUES ($1)", item) < 0)
        return -1;
    if (runner_enqueue(conn, "ledger", args, NULL, &id, err, sizeof err) != RUNNER_OK ||
        runner_enqueue(conn, "log", args, NULL, &id, err, sizeof err) != RUNNER_OK)
        return fprintf(stderr, "embed: could not enqueue: %s\n", err), -1;
    printf("order %s: %s\n", item, end);
    return sql(conn, end, NULL);
}

/* stop_later: runner_stop does what SIGTERM does, from any thread. */
static void *stop_later(void *r)
{
    long ms = atol(getenv("EMBED_EXIT_AFTER_MS"));
    nanosleep(&(struct timespec){.tv_sec = ms / 1000, .tv_nsec = ms % 1000 * 1000000}, NULL);
    runner_stop(r);
    return NULL;
}

int main(int argc, char **argv)
{
    const char *url = argc > 1 ? argv[1] : getenv("RUNNER_DATABASE_URL");
    char err[RUNNER_ERR_LEN];
    runner *r = runner_create_from_yaml(config, "embed.yaml", err, sizeof err);
    if (!url || !r)
        return fprintf(stderr, "embed: %s\n", r ? "no database URL" : err), 2;
    runner_set_database_url(r, url);
    runner_register_tx(r, "ledger", ledger, NULL);
    runner_register(r, "log", log_job, NULL);

    PGconn *conn = PQconnectdb(url);
    int rc = sql(conn, "CREATE TABLE IF NOT EXISTS orders (item text)", NULL) < 0 ||
             sql(conn, "CREATE TABLE IF NOT EXISTS ledger (args jsonb)", NULL) < 0 ||
             place_order(conn, "book", "COMMIT") < 0 || place_order(conn, "ghost", "ROLLBACK") < 0;
    PQfinish(conn);
    pthread_t stopper;
    int timed =
        !rc && getenv("EMBED_EXIT_AFTER_MS") && pthread_create(&stopper, NULL, stop_later, r) == 0;
    if (!rc && (rc = runner_run(r, err, sizeof err)) != RUNNER_OK)
        fprintf(stderr, "embed: %s: %s\n", runner_strerror(rc), err);
    if (timed)
        pthread_join(stopper, NULL);
    runner_destroy(r);
    return rc ? 1 : 0;
}
