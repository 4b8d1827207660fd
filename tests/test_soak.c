/* test_soak.c - chaos soak with the real binary: three runner instances work a steady
 * stream of exec and sql jobs while the test, at random moments, SIGKILLs and restarts
 * them, SIGTERMs them with a short grace period and restarts them, terminates their
 * database backends (application_name 'runner%'), and exactly once each restarts the
 * primary, freezes it (every server process SIGSTOPped) for longer than the lease, and
 * fails it over: the primary stopped with -m immediate and its synchronous standby
 * promoted. The soak has a server pair of its own (tests/pgpair.sh) and the instances use
 * the multi-host URL with target_session_attrs=read-write.
 * Then every instance stops, a clean one finishes the work, and SQL checks the outcome:
 *
 *   - every job completed, none left running or leased;
 *   - sql jobs: exactly one effect row each (the effects table has no unique constraint);
 *   - exec jobs: at least one effect line each; duplicates are reported, and each extra
 *     run must be explained by an entry of the job's history (rescued, released, failed);
 *   - no instance row claims to be alive: SIGKILLed instances are marked 'lost' by the
 *     rescue pass of a live peer, so the final clean instance keeps running until only
 *     its own row is running (at most lease + heartbeat after the last kill) and only then
 *     stops cleanly;
 *   - no process of the soak (runner, sentinel, job) is left.
 *
 * A summary line goes to stderr ("soak: ...").
 *
 *   RUNNER_SOAK_SECONDS  the chaos window in seconds (default 40, at least 20). Long form:
 *       RUNNER_SOAK_SECONDS=600 tests/with-postgres.sh \
 *           meson test -C build soak --print-errorlogs --timeout-multiplier 2
 *   RUNNER_SOAK_RATE     jobs enqueued per second (default 50)
 *   RUNNER_SOAK_SEED     seed of the random choices (the summary line prints it)
 *
 * The test starts and tracks the instances itself rather than through th_runner_start:
 * a long soak restarts them far more often than the harness's 64 tracked children.
 * SIGKILL may hit an instance at any moment, even one still starting; SIGTERM only one
 * that has taken charge of the signal (/proc/PID/status): before main() blocks it, its
 * default action kills the process, which no program can prevent. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define NINST 3
#define DEFAULT_SECONDS 40
#define MIN_SECONDS 20
#define MAX_SECONDS (6 * 3600)
#define DEFAULT_RATE 50
#define MAX_RATE 1000
#define TICK_MS 20
#define FEED_MS 200
/* a freeze of the server: longer than the lease (2 s) */
#define FREEZE_MS 3500
/* a SIGTERMed instance (grace 300 ms, kill_after 300 ms) must have exited 0 within this:
 * generous for the sanitizer build on a loaded two-CPU machine */
#define TERM_BOUND_MS 15000
#define LOG_TAIL (16 * 1024)

/* exec: sleep 0-99 ms, one run in 20 0.8 s (longer than the chaos instances' grace, so
 * SIGTERM cancels and releases it), then append "id attempt" to $EFFECTS. dash has no
 * $RANDOM: id and attempt pick the duration, so a rerun sleeps differently. */
#define EXEC_SCRIPT                                                                                \
    "ms=$(( (RUNNER_JOB_ID * 7919 + RUNNER_JOB_ATTEMPT * 104729) % 100 ));"                        \
    " if [ $ms -ge 95 ]; then ms=800; fi;"                                                         \
    " sleep $((ms / 1000)).$(printf %03d $((ms % 1000)));"                                         \
    " echo \\\"$RUNNER_JOB_ID $RUNNER_JOB_ATTEMPT\\\" >> \\\"$EFFECTS\\\""

/* sql: one row keyed by the job id, mostly after 0-20 ms, one in 20 after 0.3-0.8 s */
#define SQL_EFFECT                                                                                 \
    "INSERT INTO effects (job_id, payload) SELECT $2, $1"                                          \
    " FROM pg_sleep(CASE WHEN random() < 0.05 THEN 0.3 + random() / 2"                             \
    "                    ELSE random() * 0.02 END)"

typedef struct inst {
    char name;
    const char *log; /* every incarnation of the slot appends here */
    pid_t pid;       /* 0: not running */
    int64_t term_sent;
} inst;

typedef struct soak {
    const char *url; /* both servers, read-write wanted */
    PGconn *conn;    /* the test's own connection: feeding, chaos, checks */
    char primary;    /* the pair's node that is primary: 'p', then 's' after the failover */
    const char *chaos_cfg, *final_cfg;
    const char *effects;
    unsigned seed;
    inst in[NINST];
    int starts, kills, terms, bterms, backends, pg_restarts, pg_freezes, pg_promotions;
    bool frozen; /* the server is SIGSTOPped right now */
    int64_t max_term_ms;
    int64_t enqueued;
} soak;

/* The instances of the running test, for the failure dump and for soak_fini. */
static soak *cur;

static int64_t env_int(const char *name, int64_t def, int64_t lo, int64_t hi)
{
    const char *v = getenv(name);
    if (v == NULL || v[0] == '\0')
        return def;
    char *end;
    long long n = strtoll(v, &end, 10);
    if (*end != '\0' || n < lo || n > hi)
        cr_assert_fail("%s=%s: expected an integer from %lld to %lld", name, v, (long long)lo,
                       (long long)hi);
    return n;
}

static int64_t between(soak *s, int64_t lo, int64_t hi)
{
    return lo + (int64_t)(rand_r(&s->seed) % (unsigned)(hi - lo + 1));
}

/* dump_logs prints the tail of every instance log (the harness knows only its own
 * children). */
static void dump_logs(void)
{
    for (int i = 0; cur != NULL && i < NINST; i++) {
        FILE *f = fopen(cur->in[i].log, "r");
        if (f == NULL)
            continue;
        fseek(f, 0, SEEK_END);
        long size = ftell(f);
        long from = size > LOG_TAIL ? size - LOG_TAIL : 0;
        fseek(f, from, SEEK_SET);
        fprintf(stderr, "----- instance %c: %s%s -----\n", cur->in[i].name, cur->in[i].log,
                from > 0 ? ", last 16 KiB" : "");
        char buf[4096];
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, f)) > 0)
            fwrite(buf, 1, n, stderr);
        fclose(f);
    }
    fflush(stderr);
}

#define soak_assert(cond, ...)                                                                     \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            dump_logs();                                                                           \
            th_fail(__VA_ARGS__);                                                                  \
        }                                                                                          \
    } while (0)

#define soak_assert_eq(actual, expected, what)                                                     \
    do {                                                                                           \
        long long soak_a_ = (long long)(actual), soak_e_ = (long long)(expected);                  \
        soak_assert(soak_a_ == soak_e_, "%s: expected %lld, got %lld", (what), soak_e_, soak_a_);  \
    } while (0)

static const char *describe(int st)
{
    if (WIFEXITED(st))
        return th_fmt("exit status %d", WEXITSTATUS(st));
    if (WIFSIGNALED(st))
        return th_fmt("signal %d (%s)", WTERMSIG(st), strsignal(WTERMSIG(st)));
    return th_fmt("wait status 0x%x", st);
}

/* spawn starts `runner --config CFG --database-url URL run` for slot in: its own process
 * group, SIGKILLed if the test process dies, output appended to the slot's log, $EFFECTS
 * in its environment (and so in its jobs'). */
static void spawn(soak *s, inst *in, const char *cfg)
{
    const char *bin = th_runner_bin();
    const char *dir = th_tmpdir();
    const char *effects = th_fmt("EFFECTS=%s", s->effects);
    pid_t parent = getpid();
    fflush(NULL);
    pid_t pid = fork();
    soak_assert(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        for (int sig = 1; sig < NSIG; sig++) {
            if (sig != SIGKILL && sig != SIGSTOP)
                signal(sig, SIG_DFL);
        }
        int nul = open("/dev/null", O_RDONLY);
        int out = open(in->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (nul < 0 || out < 0)
            _exit(126);
        dup2(nul, 0);
        dup2(out, 1);
        dup2(out, 2);
        if (close_range(3, ~0U, 0) != 0) {
            for (int fd = 3; fd < 4096; fd++)
                close(fd);
        }
        if (chdir(dir) != 0)
            _exit(126);
        putenv((char *)effects);
        execl(bin, bin, "--config", cfg, "--database-url", s->url, "run", (char *)NULL);
        _exit(127);
    }
    setpgid(pid, pid);
    in->pid = pid;
    in->term_sent = 0;
    s->starts++;
}

/* reap waits at most timeout_ms for in to exit; true (and *status) when it did. */
static bool reap(inst *in, int64_t timeout_ms, int *status)
{
    int64_t deadline = th_now_ms() + timeout_ms;
    for (;;) {
        pid_t r = waitpid(in->pid, status, WNOHANG);
        if (r == in->pid) {
            in->pid = 0;
            return true;
        }
        soak_assert(r == 0 || errno == EINTR, "waitpid(%d): %s", (int)in->pid, strerror(errno));
        if (th_now_ms() >= deadline)
            return false;
        th_sleep_ms(5);
    }
}

/* handles_sigterm: the runner has taken charge of SIGTERM (blocked it for its signal
 * thread or installed a handler). Before that - between fork and exec, and in the first
 * moments of main() - SIGTERM's default action still applies and simply kills it. */
static bool handles_sigterm(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return false;
    unsigned long long blk = 0, cgt = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        sscanf(line, "SigBlk: %llx", &blk);
        sscanf(line, "SigCgt: %llx", &cgt);
    }
    fclose(f);
    return ((blk | cgt) & (1ULL << (SIGTERM - 1))) != 0;
}

/* pick returns a random instance that runs and is not stopping (and, for_term, that is
 * ready for SIGTERM), or NULL. */
static inst *pick(soak *s, bool for_term)
{
    inst *c[NINST];
    int n = 0;
    for (int i = 0; i < NINST; i++) {
        if (s->in[i].pid != 0 && s->in[i].term_sent == 0 &&
            (!for_term || handles_sigterm(s->in[i].pid)))
            c[n++] = &s->in[i];
    }
    return n == 0 ? NULL : c[between(s, 0, n - 1)];
}

/* sigkill kills in (the runner process only, as `kill -9 PID` does: its sentinel must
 * take the job processes down) and waits for it. */
static void sigkill(soak *s, inst *in)
{
    soak_assert(kill(in->pid, SIGKILL) == 0, "kill(%d, SIGKILL): %s", (int)in->pid,
                strerror(errno));
    int st;
    soak_assert(reap(in, 5000, &st), "instance %c survived SIGKILL for 5 s", in->name);
    s->kills++;
}

/* check_alive: an instance nobody stopped must still run. */
static void check_alive(inst *in)
{
    int st;
    soak_assert(!reap(in, 0, &st), "instance %c (pid %d) ended on its own: %s", in->name,
                (int)in->pid, describe(st));
}

/* sigterm sends SIGTERM once the instance handles it (waiting at most 10 s for that). */
static void sigterm(soak *s, inst *in)
{
    int64_t deadline = th_now_ms() + 10000;
    while (!handles_sigterm(in->pid)) {
        check_alive(in);
        soak_assert(th_now_ms() < deadline,
                    "instance %c (pid %d) did not take charge of SIGTERM within 10 s", in->name,
                    (int)in->pid);
        th_sleep_ms(5);
    }
    soak_assert(kill(in->pid, SIGTERM) == 0, "kill(%d, SIGTERM): %s", (int)in->pid,
                strerror(errno));
    in->term_sent = th_now_ms();
    s->terms++;
}

/* check_stopping: a SIGTERMed instance must exit 0 within TERM_BOUND_MS; returns true
 * once it has. */
static bool check_stopping(soak *s, inst *in, int64_t now)
{
    int st;
    if (!reap(in, 0, &st)) {
        soak_assert(now - in->term_sent < TERM_BOUND_MS,
                    "instance %c still running %lld ms after SIGTERM", in->name,
                    (long long)(now - in->term_sent));
        return false;
    }
    soak_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
                "instance %c ended with %s after SIGTERM, expected exit status 0", in->name,
                describe(st));
    if (now - in->term_sent > s->max_term_ms)
        s->max_term_ms = now - in->term_sent;
    in->term_sent = 0;
    return true;
}

/* feed enqueues what the rate asks for by now: a random mix of exec ('ex') and sql ('sq')
 * jobs in one statement. */
static void feed(soak *s, int64_t elapsed_ms, int64_t rate)
{
    int64_t due = rate * elapsed_ms / 1000 - s->enqueued;
    if (due <= 0)
        return;
    s->enqueued += th_query_int64(s->conn,
                                  "SELECT count(runner.enqueue("
                                  "  CASE WHEN random() < 0.5 THEN 'ex' ELSE 'sq' END,"
                                  "  jsonb_build_object('n', g)))"
                                  " FROM generate_series(1, $1::int) g",
                                  th_fmt("%lld", (long long)due), NULL);
}

/* terminate_backends cuts every connection of the runners (control loops and pools). */
static void terminate_backends(soak *s)
{
    s->backends += (int)th_query_int64(s->conn,
                                       "SELECT count(pg_terminate_backend(pid))"
                                       " FROM pg_stat_activity"
                                       " WHERE datname = current_database()"
                                       "   AND application_name LIKE 'runner%'"
                                       "   AND pid <> pg_backend_pid()",
                                       NULL);
    s->bterms++;
}

/* leftovers counts live processes other than this one whose environment holds this
 * test's EFFECTS= entry (runners, sentinels, jobs), SIGKILLing them when kill is set. */
static int leftovers(soak *s, bool kill_them)
{
    const char *want = th_fmt("EFFECTS=%s", s->effects);
    size_t wlen = strlen(want) + 1; /* with its NUL */
    DIR *d = opendir("/proc");
    if (d == NULL)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] < '1' || e->d_name[0] > '9')
            continue;
        pid_t pid = (pid_t)strtol(e->d_name, NULL, 10);
        if (pid == getpid() || th_pid_gone(pid))
            continue;
        char path[300];
        snprintf(path, sizeof path, "/proc/%s/environ", e->d_name);
        int fd = open(path, O_RDONLY);
        if (fd < 0)
            continue;
        static char buf[256 * 1024];
        ssize_t len = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (len <= 0)
            continue;
        buf[len] = '\0';
        for (ssize_t i = 0; i < len; i += (ssize_t)strlen(buf + i) + 1) {
            if ((size_t)(len - i) >= wlen && memcmp(buf + i, want, wlen) == 0) {
                n++;
                if (kill_them)
                    kill(pid, SIGKILL);
                break;
            }
        }
    }
    closedir(d);
    return n;
}

/* freeze_server stops every server process for longer than the lease (2 s): connections
 * stay open and nothing answers, statements and connection attempts hang. */
static void freeze_server(soak *s)
{
    th_signal_postgres(th_pair_datadir(s->primary), SIGSTOP);
    s->frozen = true;
    th_sleep_ms(FREEZE_MS);
    th_signal_postgres(th_pair_datadir(s->primary), SIGCONT);
    s->frozen = false;
    s->pg_freezes++;
}

/* fail_over stops the primary at once (-m immediate: no shutdown checkpoint, connections
 * cut) and promotes the standby. With synchronous replication every acknowledged commit
 * is on the standby: nothing the runners or the feeder were told is lost. */
static void fail_over(soak *s)
{
    th_pair_ctl('p', "stop -m immediate -w");
    th_pair_ctl('s', "promote -w");
    s->primary = 's';
    s->pg_promotions++;
}

static void soak_fini(void)
{
    if (cur != NULL && cur->frozen)
        th_signal_postgres(th_pair_datadir(cur->primary), SIGCONT);
    if (cur != NULL) {
        for (int i = 0; i < NINST; i++) {
            inst *in = &cur->in[i];
            if (in->pid != 0) {
                kill(-in->pid, SIGKILL);
                kill(in->pid, SIGKILL);
                int st;
                if (!reap(in, 10000, &st))
                    fprintf(stderr, "soak: pid %d did not die after SIGKILL\n", (int)in->pid);
            }
        }
        if (cur->effects != NULL)
            leftovers(cur, true);
        if (cur->conn != NULL)
            PQfinish(cur->conn);
        cur = NULL;
    }
    th_teardown();
}

/* load_exec_effects copies the effects file ("id attempt" lines) into the table
 * exec_effects, so that the checks are SQL like the sql jobs' ones. */
static int64_t load_exec_effects(soak *s)
{
    th_exec(s->conn, "CREATE TABLE exec_effects (job_id bigint NOT NULL, attempt int)", NULL);
    char *text = th_read_file(s->effects);
    size_t cap = strlen(text) + 3;
    char *ids = malloc(cap), *atts = malloc(cap);
    soak_assert(ids != NULL && atts != NULL, "out of memory");
    size_t ni = 0, na = 0;
    ids[ni++] = '{';
    atts[na++] = '{';
    int64_t lines = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        long long id, att;
        soak_assert(sscanf(line, "%lld %lld", &id, &att) == 2, "bad line in %s: \"%s\"", s->effects,
                    line);
        ni += (size_t)sprintf(ids + ni, "%s%lld", lines ? "," : "", id);
        na += (size_t)sprintf(atts + na, "%s%lld", lines ? "," : "", att);
        lines++;
    }
    ids[ni++] = '}';
    ids[ni] = '\0';
    atts[na++] = '}';
    atts[na] = '\0';
    th_exec(s->conn, "INSERT INTO exec_effects SELECT * FROM unnest($1::bigint[], $2::int[])",
            ids, atts, NULL);
    free(ids);
    free(atts);
    return lines;
}

static int64_t q(soak *s, const char *sql)
{
    return th_query_int64(s->conn, sql, NULL);
}

/* The two kinds: 'ex' (exec) and 'sq' (sql). Retries come quickly: backend terminations
 * fail sql attempts, and every SIGKILL charges the attempts of the jobs it interrupts. */
static const char KINDS[] = "  ex:\n"
                            "    command: [\"/bin/sh\", \"-c\", \"" EXEC_SCRIPT "\"]\n"
                            "    max_attempts: 100\n"
                            "    backoff: {base: 10ms, max: 200ms}\n"
                            "  sq:\n"
                            "    sql: \"" SQL_EFFECT "\"\n"
                            "    max_attempts: 100\n"
                            "    backoff: {base: 10ms, max: 200ms}\n";

static const char *config(const char *grace, const char *kill_after)
{
    return th_write_config("worker:\n"
                           "  concurrency: 8\n"
                           "  poll_interval: 100ms\n"
                           "  lease: 2s\n"
                           "  heartbeat: 500ms\n"
                           "shutdown:\n"
                           "  grace: %s\n"
                           "  kill_after: %s\n"
                           "log:\n"
                           "  level: info\n"
                           "kinds:\n"
                           "%s",
                           grace, kill_after, KINDS);
}

Test(soak, chaos, .init = th_setup, .fini = soak_fini, .timeout = MAX_SECONDS + 600)
{
    int64_t seconds = env_int("RUNNER_SOAK_SECONDS", DEFAULT_SECONDS, MIN_SECONDS, MAX_SECONDS);
    int64_t rate = env_int("RUNNER_SOAK_RATE", DEFAULT_RATE, 1, MAX_RATE);
    static soak s;
    memset(&s, 0, sizeof s);
    s.seed = (unsigned)env_int("RUNNER_SOAK_SEED", (int64_t)((unsigned)time(NULL) ^ getpid()), 0,
                               4294967295LL);
    unsigned seed = s.seed;
    th_pair_start(true);
    s.url = th_pair_url('p', 's');
    s.primary = 'p';
    th_output mig = th_run(30000, NULL, "--database-url", s.url, "migrate", NULL);
    th_assert(mig.exit_code == 0, "runner migrate: exit %d: %s", mig.exit_code, mig.err);
    s.conn = PQconnectdb(s.url);
    th_assert(PQstatus(s.conn) == CONNECTION_OK, "could not connect to %s: %s", s.url,
              PQerrorMessage(s.conn));
    th_exec(s.conn, "CREATE TABLE effects (job_id bigint NOT NULL, payload jsonb)", NULL);
    s.effects = th_path("effects");
    s.chaos_cfg = config("300ms", "300ms");
    s.final_cfg = config("10s", "1s");
    for (int i = 0; i < NINST; i++) {
        s.in[i].name = (char)('A' + i);
        s.in[i].log = th_path(th_fmt("instance-%c.log", 'A' + i));
    }
    cur = &s;

    fprintf(stderr, "soak: seed=%u (RUNNER_SOAK_SEED replays the run)\n", seed);
    int64_t t0 = th_now_ms(), window = seconds * 1000, now;
    for (int i = 0; i < NINST; i++)
        spawn(&s, &s.in[i], s.chaos_cfg);
    int64_t next_kill = t0 + between(&s, 1500, 4000);
    int64_t next_term = t0 + between(&s, 1500, 4000);
    int64_t next_bterm = t0 + between(&s, 1500, 4000);
    int64_t pg_restart_at = t0 + window * between(&s, 35, 65) / 100;
    /* apart from the restart: a freeze in the first or the last quarter of the window, the
     * failover in the other one */
    bool freeze_first = between(&s, 0, 1);
    int64_t early = t0 + window * between(&s, 10, 25) / 100;
    int64_t late = t0 + window * between(&s, 75, 88) / 100;
    int64_t pg_freeze_at = freeze_first ? early : late;
    int64_t pg_promote_at = freeze_first ? late : early;
    int64_t next_feed = t0;
    while ((now = th_now_ms()) < t0 + window) {
        if (now >= next_feed) {
            feed(&s, now - t0, rate);
            next_feed = now + FEED_MS;
        }
        for (int i = 0; i < NINST; i++) {
            inst *in = &s.in[i];
            if (in->pid != 0 && in->term_sent != 0) {
                if (check_stopping(&s, in, now))
                    spawn(&s, in, s.chaos_cfg);
            } else if (in->pid != 0) {
                check_alive(in);
            }
        }
        inst *victim;
        if (now >= next_kill && (victim = pick(&s, false)) != NULL) {
            sigkill(&s, victim);
            spawn(&s, victim, s.chaos_cfg);
            next_kill = th_now_ms() + between(&s, 1000, 4000);
        }
        if (now >= next_term && (victim = pick(&s, true)) != NULL) {
            sigterm(&s, victim);
            next_term = now + between(&s, 1000, 4000);
        }
        if (now >= next_bterm) {
            terminate_backends(&s);
            next_bterm = th_now_ms() + between(&s, 1000, 4000);
        }
        if (s.pg_restarts == 0 && now >= pg_restart_at) {
            fprintf(stderr, "soak: %lld ms: restarting the primary\n", (long long)(now - t0));
            th_pair_ctl(s.primary, "restart -m fast -w");
            s.pg_restarts++;
        }
        if (s.pg_freezes == 0 && now >= pg_freeze_at) {
            fprintf(stderr, "soak: %lld ms: freezing the primary\n", (long long)(now - t0));
            freeze_server(&s);
        }
        if (s.pg_promotions == 0 && now >= pg_promote_at) {
            fprintf(stderr, "soak: %lld ms: failing over\n", (long long)(now - t0));
            fail_over(&s);
        }
        th_sleep_ms(TICK_MS);
    }
    int64_t chaos_ms = th_now_ms() - t0;
    int64_t done_in_chaos = q(&s, "SELECT count(*) FROM runner.jobs WHERE state = 'completed'");

    /* The end: instances being stopped finish stopping; one more is SIGKILLed (its row
     * must end 'lost', its jobs rescued), the others stop cleanly. */
    inst *last_kill = NULL;
    for (int i = 0; i < NINST; i++) {
        inst *in = &s.in[i];
        if (in->pid != 0 && in->term_sent == 0 && last_kill == NULL) {
            sigkill(&s, in);
            last_kill = in;
        } else if (in->pid != 0 && in->term_sent == 0) {
            sigterm(&s, in);
        }
    }
    for (int i = 0; i < NINST; i++) {
        while (s.in[i].pid != 0 && !check_stopping(&s, &s.in[i], th_now_ms()))
            th_sleep_ms(TICK_MS);
    }

    /* A clean instance finishes the work and, being the only live peer, marks the
     * SIGKILLed instances lost: it must see their heartbeats older than their lease (2 s)
     * in a rescue pass (every ~heartbeat) before it stops itself. */
    inst *last = &s.in[0];
    spawn(&s, last, s.final_cfg);
    bool all_done =
        th_wait_until(s.conn, 120000,
                      "SELECT count(*) = 0 FROM runner.jobs WHERE state <> 'completed'", NULL);
    bool peers_marked = th_wait_until(s.conn, 30000,
                                      "SELECT count(*) = 1 AND bool_and(pid = $1::int)"
                                      " FROM runner.instances"
                                      " WHERE state IN ('running', 'draining')",
                                      th_fmt("%d", (int)last->pid), NULL);
    check_alive(last);
    sigterm(&s, last);
    while (!check_stopping(&s, last, th_now_ms()))
        th_sleep_ms(TICK_MS);
    int64_t drain_ms = th_now_ms() - t0 - chaos_ms;

    /* Job processes of SIGKILLed instances die with their sentinel; allow the last
     * sleep (0.8 s) to end. */
    int64_t deadline = th_now_ms() + 10000;
    int left;
    while ((left = leftovers(&s, false)) > 0 && th_now_ms() < deadline)
        th_sleep_ms(100);

    int64_t lines = load_exec_effects(&s);
    int64_t jobs = q(&s, "SELECT count(*) FROM runner.jobs");
    int64_t exec_jobs = q(&s, "SELECT count(*) FROM runner.jobs WHERE kind = 'ex'");
    int64_t sql_jobs = q(&s, "SELECT count(*) FROM runner.jobs WHERE kind = 'sq'");
    int64_t unfinished = q(&s, "SELECT count(*) FROM runner.jobs WHERE state <> 'completed'");
    int64_t leased = q(&s, "SELECT count(*) FROM runner.jobs"
                           " WHERE state = 'running' OR lease_owner IS NOT NULL");
    int64_t sql_rows = q(&s, "SELECT count(*) FROM effects");
    int64_t sql_dups = q(&s, "SELECT count(*) - count(DISTINCT job_id) FROM effects");
    int64_t sql_lost = q(&s, "SELECT count(*) FROM runner.jobs j WHERE kind = 'sq' AND NOT"
                             " EXISTS (SELECT 1 FROM effects e WHERE e.job_id = j.id)");
    int64_t sql_strays = q(&s, "SELECT count(*) FROM effects e WHERE NOT EXISTS"
                               " (SELECT 1 FROM runner.jobs j WHERE j.id = e.job_id"
                               "  AND j.kind = 'sq' AND j.state = 'completed')");
    int64_t exec_dups = q(&s, "SELECT count(*) - count(DISTINCT job_id) FROM exec_effects");
    int64_t exec_dup_jobs = q(&s, "SELECT count(*) FROM (SELECT job_id FROM exec_effects"
                                  " GROUP BY job_id HAVING count(*) > 1) d");
    int64_t exec_lost = q(&s, "SELECT count(*) FROM runner.jobs j WHERE kind = 'ex' AND NOT"
                              " EXISTS (SELECT 1 FROM exec_effects e WHERE e.job_id = j.id)");
    int64_t exec_strays = q(&s, "SELECT count(*) FROM exec_effects e WHERE NOT EXISTS"
                                " (SELECT 1 FROM runner.jobs j WHERE j.id = e.job_id"
                                "  AND j.kind = 'ex')");
    /* every run after the first leaves an entry in the history: a rerun without one
     * would be a job run twice for no recorded reason */
    int64_t unexplained = q(&s, "SELECT count(*) FROM runner.jobs j"
                                " WHERE kind = 'ex' AND (SELECT count(*) FROM exec_effects e"
                                "  WHERE e.job_id = j.id) > 1 + jsonb_array_length(j.errors)");
    int64_t alive = q(&s, "SELECT count(*) FROM runner.instances"
                          " WHERE state IN ('running', 'draining')");
    int64_t inst_lost = q(&s, "SELECT count(*) FROM runner.instances WHERE state = 'lost'");
    int64_t inst_stopped = q(&s, "SELECT count(*) FROM runner.instances WHERE state = 'stopped'");
    int64_t rescued = q(&s, "SELECT count(*) FROM runner.jobs"
                            " WHERE errors @> '[{\"outcome\": \"rescued\"}]'");
    int64_t released = q(&s, "SELECT count(*) FROM runner.jobs"
                             " WHERE errors::text LIKE '%interrupted by shutdown%'");
    int64_t failed_attempts = q(&s, "SELECT count(*) FROM runner.jobs j,"
                                    " jsonb_array_elements(j.errors) e"
                                    " WHERE e->>'outcome' IS DISTINCT FROM 'rescued'"
                                    "   AND e->>'error' NOT LIKE 'interrupted by shutdown%'");
    int64_t max_attempt = q(&s, "SELECT max(attempt) FROM runner.jobs");
    int64_t lost = unfinished + sql_lost + exec_lost;
    int64_t elapsed = th_now_ms() - t0;
    fprintf(stderr,
            "soak: seed=%u seconds=%lld jobs=%lld exec=%lld sql=%lld kills=%d terminations=%d "
            "backend_terminations=%d (backends=%d) pg_restarts=%d pg_freezes=%d pg_promotions=%d duplicates_exec=%lld "
            "(jobs=%lld unexplained=%lld) duplicates_sql=%lld lost=%lld unfinished=%lld "
            "strays=%lld starts=%d max_sigterm_exit_ms=%lld rescued_jobs=%lld "
            "released_jobs=%lld failed_attempts=%lld max_attempt=%lld instances_stopped=%lld "
            "instances_lost=%lld instances_alive=%lld leftover_processes=%d "
            "completed_in_chaos=%lld chaos_ms=%lld drain_ms=%lld elapsed_ms=%lld\n",
            seed, (long long)seconds, (long long)jobs, (long long)exec_jobs, (long long)sql_jobs,
            s.kills, s.terms, s.bterms, s.backends, s.pg_restarts, s.pg_freezes, s.pg_promotions,
            (long long)exec_dups,
            (long long)exec_dup_jobs, (long long)unexplained, (long long)sql_dups, (long long)lost,
            (long long)unfinished, (long long)(sql_strays + exec_strays), s.starts,
            (long long)s.max_term_ms, (long long)rescued, (long long)released,
            (long long)failed_attempts, (long long)max_attempt, (long long)inst_stopped,
            (long long)inst_lost, (long long)alive, left, (long long)done_in_chaos,
            (long long)chaos_ms, (long long)drain_ms, (long long)elapsed);

    soak_assert(all_done, "%lld of %lld jobs not completed 120 s after the chaos ended",
                (long long)unfinished, (long long)jobs);
    soak_assert_eq(unfinished, 0, "jobs not completed");
    soak_assert_eq(leased, 0, "jobs still running or leased");
    soak_assert_eq(sql_jobs + exec_jobs, jobs, "jobs of the two kinds");
    soak_assert(jobs >= s.enqueued, "%lld jobs in the table, %lld enqueued", (long long)jobs,
                (long long)s.enqueued);
    soak_assert_eq(sql_dups, 0, "duplicate sql effect rows");
    soak_assert_eq(sql_rows, sql_jobs, "sql effect rows");
    soak_assert_eq(sql_lost, 0, "sql jobs without an effect row");
    soak_assert_eq(sql_strays, 0, "sql effect rows of no completed sql job");
    soak_assert_eq(exec_lost, 0, "exec jobs without an effect line");
    soak_assert_eq(exec_strays, 0, "exec effect lines of no exec job");
    soak_assert(lines == exec_jobs + exec_dups, "%lld effect lines, %lld exec jobs + %lld dups",
                (long long)lines, (long long)exec_jobs, (long long)exec_dups);
    soak_assert_eq(unexplained, 0, "exec jobs run more often than their history explains");
    soak_assert(peers_marked, "instances other than the final one still 'running' or "
                              "'draining' 30 s after it started (SIGKILLed ones are never marked "
                              "lost?)");
    soak_assert_eq(alive, 0, "instances in state running or draining after all stopped");
    soak_assert(inst_lost >= 1, "no instance marked lost although %d were SIGKILLed", s.kills);
    soak_assert_eq(left, 0, "processes of the soak still alive 10 s after the end");
    soak_assert_eq(s.pg_restarts, 1, "PostgreSQL restarts");
    soak_assert_eq(s.pg_freezes, 1, "PostgreSQL freezes");
    soak_assert_eq(s.pg_promotions, 1, "standby promotions");
    soak_assert(s.kills >= 3 && s.terms >= 3 && s.bterms >= 3,
                "too little chaos: %d kills, %d terminations, %d backend terminations", s.kills,
                s.terms, s.bterms);
}
