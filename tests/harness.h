/* harness.h - helpers for the database test suites: fresh databases, the real runner
 * binary as a child process, bounded waits, and the runner's log on failure.
 *
 * Every db test uses .init = th_setup and .fini = th_teardown. Whatever a test creates
 * through these helpers (databases, temporary directories, child processes) is tracked and
 * removed in th_teardown, also after a failed assertion; runner children additionally
 * die with the test process (PR_SET_PDEATHSIG) if criterion kills it on a timeout.
 *
 * Assertions go through th_assert(), which prints the logs of every runner the test
 * started before failing, so a red test shows what the runner was doing. */
#ifndef RUNNER_TEST_HARNESS_H
#define RUNNER_TEST_HARNESS_H

#include <criterion/criterion.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>

/* th_assert fails the test with a message after dumping the runners' logs. */
#define th_assert(cond, ...)                                                                       \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            th_dump_logs();                                                                        \
            cr_assert_fail(__VA_ARGS__);                                                           \
        }                                                                                          \
    } while (0)

#define th_assert_eq(actual, expected, what)                                                       \
    do {                                                                                           \
        long long th_a_ = (long long)(actual), th_e_ = (long long)(expected);                      \
        th_assert(th_a_ == th_e_, "%s: expected %lld, got %lld", (what), th_e_, th_a_);            \
    } while (0)

/* th_fail fails the test unconditionally (after dumping logs). */
#define th_fail(...) th_assert(0, __VA_ARGS__)

/* .init / .fini of every database test. */
void th_setup(void);
void th_teardown(void);

/* th_require_db fails the test unless RUNNER_TEST_DATABASE_URL is set: no test is ever
 * skipped for lack of a database. Returns the URL. */
const char *th_require_db(void);

/* th_runner_bin is $RUNNER_BIN (set by meson), failing the test when it is missing. */
const char *th_runner_bin(void);

/* A database created for one test and dropped in teardown. */
typedef struct th_db {
    char name[64];
    char *url;    /* URI to pass as --database-url */
    PGconn *conn; /* the test's own connection to it */
} th_db;

/* th_fresh_db creates a database with a unique name (pid + counter) and, when migrate is
 * true, runs `runner --database-url URL migrate` on it (asserting exit 0). */
th_db *th_fresh_db(bool migrate);

/* th_tmpdir: a directory of this test (created on first use, removed in teardown). */
const char *th_tmpdir(void);
/* th_path returns "<tmpdir>/<name>" (static storage per call is NOT used: malloc'd and
 * freed in teardown). */
const char *th_path(const char *name);

/* th_write_file writes text to a file in the test's tmpdir and returns its path. */
const char *th_write_file(const char *name, const char *text);
/* th_write_config writes a runner.yaml (printf format) and returns its path. */
const char *th_write_config(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* th_read_file returns the file's contents ("" when missing); they live until teardown. */
char *th_read_file(const char *path);

/* A runner child process started by th_runner_start. */
typedef struct th_proc {
    pid_t pid;
    const char *log_path; /* stdout + stderr of the child */
    bool exited;
    int status; /* waitpid status once exited */
} th_proc;

/* th_runner_start starts `$RUNNER_BIN --config CONFIG --database-url URL run` with
 * stdout/stderr appended to a log file in the tmpdir, its working directory the tmpdir,
 * as the leader of its own process group (like a shell job: kill(-pid, SIGINT) is a
 * terminal Ctrl+C) and with extra environment entries ("NAME=value", NULL-terminated,
 * may be NULL). */
th_proc *th_runner_start(const char *url, const char *config, const char *const env[]);

/* th_spawn starts argv[0] (NULL-terminated argv) like th_runner_start, with stdout and
 * stderr to separate files; used for the CLI commands. */
th_proc *th_spawn(const char *const argv[], const char *const env[]);

/* Output of a finished CLI command. */
typedef struct th_output {
    int status;    /* waitpid status */
    int exit_code; /* WEXITSTATUS, or 128 + signal, or -1 on timeout */
    char *out;     /* stdout */
    char *err;     /* stderr */
    int64_t elapsed_ms;
} th_output;

/* th_run runs `$RUNNER_BIN ARGS...` (NULL-terminated), waits at most timeout_ms (then
 * SIGKILL, exit_code -1) and captures its output. */
th_output th_run(int64_t timeout_ms, const char *const env[], ...) __attribute__((sentinel));

/* th_wait_exit waits at most timeout_ms for p to exit. Returns true when it did; sets
 * p->status and *elapsed_ms (may be NULL). */
bool th_wait_exit(th_proc *p, int64_t timeout_ms, int64_t *elapsed_ms);
/* th_expect_exit0 waits at most timeout_ms and asserts a clean exit with status 0. */
void th_expect_exit0(th_proc *p, int64_t timeout_ms, const char *what);
/* th_alive: the child has not exited (reaps it when it has). */
bool th_alive(th_proc *p);

void th_signal(th_proc *p, int sig);
/* th_signal_group signals the child's whole process group, like a terminal does. */
void th_signal_group(th_proc *p, int sig);

/* th_query_int64 runs a query with text parameters (NULL-terminated list) and returns the
 * first column of the first row as int64 (NULL -> 0). Fails the test on error. The
 * connection is reset and the query retried while the server is restarting. */
int64_t th_query_int64(PGconn *conn, const char *sql, ...) __attribute__((sentinel));
/* th_query_text: the same for a text value (malloc'd; NULL for SQL NULL). */
char *th_query_text(PGconn *conn, const char *sql, ...) __attribute__((sentinel));
/* th_exec runs a statement for its side effects. */
void th_exec(PGconn *conn, const char *sql, ...) __attribute__((sentinel));

/* th_wait_until polls `sql` (returning one boolean) every 50 ms until it is true or
 * timeout_ms passes; connection errors count as false. Returns whether it became true. */
bool th_wait_until(PGconn *conn, int64_t timeout_ms, const char *sql, ...)
    __attribute__((sentinel));
/* th_expect_until asserts th_wait_until, naming what was awaited. */
#define th_expect_until(conn, timeout_ms, what, ...)                                               \
    th_assert(th_wait_until((conn), (timeout_ms), __VA_ARGS__), "timed out after %d ms: %s",       \
              (int)(timeout_ms), (what))

/* th_enqueue_many enqueues n jobs of kind (args JSON, queue) in one statement with
 * runner.enqueue(). */
void th_enqueue_many(PGconn *conn, int n, const char *kind, const char *args_json,
                     const char *queue);

/* th_count_lines counts the lines of a file (0 when missing). */
int th_count_lines(const char *path);
/* th_wait_lines waits at most timeout_ms until the file has at least n lines. */
bool th_wait_lines(const char *path, int n, int64_t timeout_ms);

/* th_pids_file is the file job commands append their pid to ("echo $$ >> $PIDS"); teardown
 * SIGKILLs every pid listed there that is still alive, so no job child outlives a test. */
#define TH_PIDS_FILE "pids"
const char *th_pids_file(void);

/* th_read_pids reads one pid per line (up to max); returns how many. */
int th_read_pids(const char *path, pid_t *pids, int max);
/* th_pid_gone: no such process, or only a zombie left. */
bool th_pid_gone(pid_t pid);

/* th_group_gone: no live (non-zombie) process is left in process group pgid. */
bool th_group_gone(pid_t pgid);

/* TH_EXEC_SLEEP is a job command (a JSON argv) that records its pid (the leader of its
 * process group) in $PIDS and then becomes a sleep of secs seconds: the recorded pid is
 * the process a cancel or a shutdown must stop. */
#define TH_EXEC_SLEEP(secs)                                                                        \
    "[\"/bin/sh\", \"-c\", 'echo $$ >> \"$PIDS\"; exec sleep " secs "']"

/* th_job_env is the environment job commands get in the tests: EFFECTS (a file where
 * they leave what they did), PIDS (th_pids_file) and OKFILE (a file whose existence
 * makes a flaky job succeed), all in the test's tmpdir. NULL-terminated. */
const char *const *th_job_env(void);

/* th_count runs a parameterless query that returns one number (th_query_int64). */
int64_t th_count(PGconn *conn, const char *sql);

/* th_fmt formats a string that lives until teardown. */
char *th_fmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- a primary and its streaming standby of the test's own (tests/pgpair.sh) ----
 * Unix sockets in a temporary directory (DIR/p, DIR/s), trust authentication, no TCP;
 * th_teardown destroys them once the test's runners are gone. */

/* th_pair_start builds the pair (sync: synchronous replication) and returns DIR. */
const char *th_pair_start(bool sync);
/* th_pair_ctl runs `pg_ctl ARGS` on node 'p' or 's' as the server's owner (asserting exit
 * 0), e.g. th_pair_ctl('p', "stop -m immediate -w"). */
void th_pair_ctl(char node, const char *args);
/* th_pair_node_url names one node; th_pair_url both, first the one named first, with
 * target_session_attrs=read-write. */
const char *th_pair_node_url(char node);
const char *th_pair_url(char first, char second);
/* th_pair_datadir: DIR/NODE/data, the node's data directory. */
const char *th_pair_datadir(char node);

/* th_signal_postgres sends sig to the postmaster of the data directory pgdata and to every
 * child of it (SIGSTOP the postmaster first, so that it forks no backend meanwhile; other
 * signals it last). SIGSTOP then SIGCONT freezes a server: connections stay open and
 * nothing answers. */
void th_signal_postgres(const char *pgdata, int sig);

/* th_pg_ctl runs $RUNNER_TEST_PGCTL -D $RUNNER_TEST_PGDATA -l $RUNNER_TEST_PGLOG -w ARGS
 * (as $RUNNER_TEST_PGRUNAS when set) and asserts exit 0; e.g. th_pg_ctl("restart", "-m",
 * "fast", NULL). Fails when the server is not one that with-postgres.sh started. */
void th_pg_ctl(const char *arg, ...) __attribute__((sentinel));

/* th_dump_logs prints the logs of every runner started by this test to stderr. */
void th_dump_logs(void);

/* th_sleep_ms sleeps (restarting after signals). */
void th_sleep_ms(int64_t ms);
int64_t th_now_ms(void);

#endif
