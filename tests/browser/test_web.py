#!/usr/bin/python3
"""test_web.py - drives a real `runner web` with headless Chromium on a throwaway database.

Run by scripts/browser-test.sh (./dev.sh test runs it) under tests/with-postgres.sh, which
sets RUNNER_TEST_DATABASE_URL. It creates its own database and login roles (a viewer and
an operator), seeds jobs, starts two dashboards (one per role), and then, in the browser:
opens every page, filters, pages through jobs, retries a failed job, pauses and resumes a
queue and bulk-retries failed jobs by clicking (checking the database after each), checks
that a cross-site form and forged POSTs are refused, that <script> and quote-breaking
payloads in args, errors, kinds, queues, hosts and schedules stay inert text on every
page, that the read-only role shows no action, and that pages work with scripts off. It
saves screenshots of the overview and of a job page. Every wait is bounded.
"""
import http.server
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait

WAIT_S = 15
PAYLOAD = "\"'><script>window.__xss=1</script><img src=x onerror=\"window.__xss=2\">"

BIN = os.environ.get("RUNNER_BIN", "build/runner")
BASE_URL = os.environ.get("RUNNER_TEST_DATABASE_URL")
SHOTS = os.environ.get("RUNNER_BROWSER_SHOTS", "build/browser-shots")
TAG = str(os.getpid())
DB = "runner_browser_" + TAG
VIEWER = "runner_test_viewer_" + TAG
OPERATOR = "runner_test_operator_" + TAG

failures = []
cleanup = []


def fail(msg):
    raise AssertionError(msg)


def url_for(dbname=None, user=None):
    """The test URL with another database and/or user."""
    u = urllib.parse.urlsplit(BASE_URL)
    q = dict(urllib.parse.parse_qsl(u.query))
    if user:
        q["user"] = user
    path = "/" + dbname if dbname else u.path
    # urlunsplit would drop the empty host of postgresql:///db?host=/socket/dir
    return "%s://%s%s?%s" % (u.scheme, u.netloc, path, urllib.parse.urlencode(q))


def psql(sql, url=None, check=True):
    r = subprocess.run(["psql", url or url_for(DB), "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1",
                        "-c", sql], capture_output=True, text=True, timeout=60)
    if check and r.returncode != 0:
        fail("psql failed: %s\n%s" % (sql, r.stderr))
    return r.stdout.strip() if r.returncode == 0 else r.stderr


def q1(sql):
    return psql(sql)


def start_web(user, extra_env=None, listen="127.0.0.1:0", args=()):
    log = tempfile.NamedTemporaryFile(prefix="runner-web-", suffix=".log", delete=False)
    env = dict(os.environ, **(extra_env or {}))
    p = subprocess.Popen([BIN, "--database-url", url_for(DB, user), "web", "--listen", listen,
                          *args], stdout=log, stderr=subprocess.STDOUT, env=env)
    cleanup.append(lambda: os.unlink(log.name))
    cleanup.append(lambda: dump_if_failed(log.name))
    cleanup.append(lambda: stop(p))
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        text = open(log.name).read()
        m = re.search(r'msg="dashboard listening" url=(http://[^ ]+)/ ', text)
        if m:
            return p, m.group(1), log.name
        if p.poll() is not None:
            fail("runner web exited with %s:\n%s" % (p.returncode, text))
        time.sleep(0.05)
    fail("runner web did not start:\n" + open(log.name).read())


def dump_if_failed(path):
    if failures:
        print("--- %s" % path)
        print(open(path).read()[-4000:])


def stop(p):
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def browser(scripts=True):
    profile = tempfile.mkdtemp(prefix="runner-chromium-")
    cleanup.append(lambda: shutil.rmtree(profile, ignore_errors=True))
    o = webdriver.ChromeOptions()
    o.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for a in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              "--disable-dev-shm-usage", "--window-size=1400,1000", "--user-data-dir=" + profile]:
        o.add_argument(a)
    if not scripts:
        o.add_experimental_option("prefs", {"profile.managed_default_content_settings.javascript": 2})
    d = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"),
                         options=o)
    cleanup.append(d.quit)
    d.set_page_load_timeout(WAIT_S)
    d.set_script_timeout(WAIT_S)
    return d


def wait(d, cond):
    return WebDriverWait(d, WAIT_S).until(cond)


def check(name, fn):
    """Runs one check; a failure is recorded and the others still run."""
    t0 = time.monotonic()
    try:
        fn()
        print("ok   %-44s %.1f s" % (name, time.monotonic() - t0), flush=True)
    except Exception as e:  # noqa: BLE001 - every failure is reported
        failures.append(name)
        print("FAIL %s: %s" % (name, e), flush=True)
        traceback.print_exc()


def inert(d, where):
    """The payloads stayed text: no script ran, no element came out of them."""
    if d.execute_script("return window.__xss === undefined") is not True:
        fail("%s: a payload ran script" % where)
    scripts = d.execute_script(
        "return Array.from(document.scripts).map(s => s.getAttribute('src'))")
    if scripts != ["/static/app.js"]:
        fail("%s: unexpected script elements %r" % (where, scripts))
    if d.find_elements(By.CSS_SELECTOR, "img"):
        fail("%s: a payload became an <img>" % where)


def job_ids(d):
    return [int(a.text) for a in d.find_elements(By.CSS_SELECTOR, "table.jobs tbody tr td:first-child a")]


def main():
    if not BASE_URL:
        fail("RUNNER_TEST_DATABASE_URL is not set: run under tests/with-postgres.sh")
    psql("CREATE DATABASE " + DB, url=BASE_URL)
    cleanup.append(lambda: psql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % DB, url=BASE_URL,
                                check=False))
    r = subprocess.run([BIN, "--database-url", url_for(DB), "migrate"], capture_output=True,
                       text=True, timeout=60)
    if r.returncode != 0:
        fail("migrate failed: " + r.stderr)
    psql("CREATE ROLE %s LOGIN; GRANT runner_viewer TO %s;"
         "CREATE ROLE %s LOGIN; GRANT runner_operator TO %s;" % (VIEWER, VIEWER, OPERATOR, OPERATOR))
    cleanup.append(lambda: psql("DROP ROLE IF EXISTS %s; DROP ROLE IF EXISTS %s" % (VIEWER, OPERATOR),
                                url=BASE_URL, check=False))

    # realistic data first, for the screenshots
    psql("""
INSERT INTO runner.instances (host, pid, version, concurrency, queues, lease)
VALUES ('app-1', 4101, '0.1.0', 20, '{default,mail}', '30 s'),
       ('app-2', 4102, '0.1.0', 20, '{default,mail}', '30 s');
INSERT INTO runner.jobs (queue, kind, args, state, attempt, max_attempts, created_at, started_at,
                         finished_at)
SELECT 'default', 'hello', jsonb_build_object('name', 'user' || g), 'completed', 1, 25,
       now() - interval '10 min' + g * interval '1 s', now() - interval '10 min' + g * interval '1 s',
       now() - interval '10 min' + g * interval '1 s' + interval '800 ms'
  FROM generate_series(1, 130) g;
INSERT INTO runner.jobs (queue, kind, args, state, run_at)
SELECT 'mail', 'send_mail', jsonb_build_object('to', 'user' || g || '@example.com'), 'available',
       now() + (g % 3) * interval '1 min' FROM generate_series(1, 12) g;
INSERT INTO runner.jobs (queue, kind, args, state, attempt, max_attempts, created_at, run_at,
                         started_at, finished_at, last_error, errors)
VALUES ('default', 'resize', '{"image": "cat.png", "width": 640}', 'failed', 3, 3,
        now() - interval '6 min', now() - interval '62 s', now() - interval '61 s',
        now() - interval '58 s', 'exit status 1: convert: no space left',
        jsonb_build_array(
          jsonb_build_object('at', now() - interval '5 min', 'attempt', 1, 'outcome', 'retry',
                             'error', 'exit status 1: convert: timeout'),
          jsonb_build_object('at', now() - interval '3 min', 'attempt', 2, 'outcome', 'retry',
                             'error', 'exit status 1: convert: timeout'),
          jsonb_build_object('at', now() - interval '1 min', 'attempt', 3, 'outcome', 'retry',
                             'error', 'exit status 1: convert: no space left')));
UPDATE runner.jobs j SET state = 'running', attempt = 1, max_attempts = 25, started_at = now(),
       lease_owner = (SELECT id FROM runner.instances WHERE host = 'app-1'),
       lease_expires_at = now() + interval '30 s'
 WHERE j.id IN (SELECT id FROM runner.jobs WHERE queue = 'mail' ORDER BY id LIMIT 2);
INSERT INTO runner.schedules (name, cron, timezone, kind, args, queue, priority, catch_up, def_hash,
                              last_fire_at, next_fire_at)
VALUES ('nightly_report', '0 3 * * *', 'Europe/Berlin', 'report', '{}', 'default', 0, 'latest',
        'x', now() - interval '7 hours', now() + interval '17 hours');
""")
    failed_id = int(q1("SELECT id FROM runner.jobs WHERE kind = 'resize'"))

    op, op_url, op_log = start_web(OPERATOR)
    vw, vw_url, _ = start_web(VIEWER)
    d = browser()
    os.makedirs(SHOTS, exist_ok=True)

    def screenshots():
        d.get(op_url + "/")
        wait(d, EC.presence_of_element_located((By.CSS_SELECTOR, "table.grid")))
        d.save_screenshot(os.path.join(SHOTS, "dashboard-overview.png"))
        d.get("%s/jobs/%d" % (op_url, failed_id))
        wait(d, EC.presence_of_element_located((By.CSS_SELECTOR, "pre.json")))
        d.save_screenshot(os.path.join(SHOTS, "dashboard-job.png"))
    check("screenshots of the overview and a job", screenshots)

    # now the hostile data: every text field a page shows holds the payload
    psql("""
INSERT INTO runner.instances (host, pid, version, concurrency, queues, lease)
VALUES (:'p', 1, :'p', 1, ARRAY[:'p'], '30 s');
INSERT INTO runner.jobs (queue, kind, args, state, attempt, max_attempts, finished_at, last_error,
                         errors, unique_key)
VALUES (:'p', :'p', jsonb_build_object(:'p', :'p'), 'failed', 1, 1, now(), :'p',
        jsonb_build_array(jsonb_build_object('at', now(), 'attempt', 1, 'outcome', :'p',
                                             'error', :'p', 'instance', :'p')), :'p');
INSERT INTO runner.jobs (queue, kind, args, state, attempt, max_attempts, started_at, lease_owner,
                         lease_expires_at)
SELECT :'p', :'p', jsonb_build_object('k', :'p'), 'running', 1, 5, now(), id, now() + interval '30 s'
  FROM runner.instances WHERE host = :'p';
SELECT runner.pause_queue(:'p');
INSERT INTO runner.schedules (name, cron, timezone, kind, args, queue, priority, catch_up, def_hash)
VALUES (:'p', :'p', :'p', :'p', '{}', :'p', 0, 'latest', 'y');
INSERT INTO runner.jobs (queue, kind, state, attempt, max_attempts, finished_at, last_error)
SELECT 'default', 'bulkkind', 'failed', 1, 1, now(), 'boom' FROM generate_series(1, 3);
INSERT INTO runner.jobs (queue, kind, state, attempt, max_attempts, finished_at, last_error)
VALUES ('default', 'forge', 'failed', 1, 1, now(), 'must stay failed');
""".replace(":'p'", "'" + PAYLOAD.replace("'", "''") + "'"))
    xss_id = int(q1("SELECT id FROM runner.jobs WHERE state = 'failed' AND kind LIKE '%script%'"))
    forge_id = int(q1("SELECT id FROM runner.jobs WHERE kind = 'forge'"))

    pages = ["/", "/jobs", "/jobs?state=running", "/jobs?state=failed", "/jobs/%d" % xss_id,
             "/jobs?q=" + urllib.parse.quote("<script>"), "/jobs?kind=" + urllib.parse.quote(PAYLOAD),
             "/queues", "/schedules", "/instances"]

    def every_page():
        for p in pages:
            d.get(op_url + p)
            h1 = wait(d, EC.presence_of_element_located((By.TAG_NAME, "h1"))).text
            if not h1:
                fail("%s: no heading" % p)
            inert(d, p)
            if p != "/" and "window.__xss=1" not in d.find_element(By.TAG_NAME, "main").text \
                    and p not in ("/jobs?state=failed",):
                fail("%s: the payload is not shown as text" % p)
        d.get("%s/jobs/%d" % (op_url, xss_id))
        pre = d.find_element(By.CSS_SELECTOR, "pre.json").text
        if PAYLOAD.replace('"', '\\"') not in pre:
            fail("args not pretty-printed as text: %r" % pre)
        hist = d.find_elements(By.CSS_SELECTOR, "section table.grid tbody tr")
        if len(hist) != 1 or "window.__xss=1" not in hist[0].text:
            fail("the error history is not shown")
    check("every page renders, payloads inert", every_page)

    def headers():
        with urllib.request.urlopen(op_url + "/jobs") as r:
            h = r.headers
            want = {"Content-Security-Policy": "default-src 'self'", "X-Frame-Options": "DENY",
                    "Referrer-Policy": "same-origin"}
            for k, v in want.items():
                if v not in (h.get(k) or ""):
                    fail("header %s is %r" % (k, h.get(k)))
    check("security headers", headers)

    def filter_jobs():
        d.get(op_url + "/jobs")
        Select(d.find_element(By.NAME, "state")).select_by_visible_text("completed")
        box = d.find_element(By.NAME, "kind")
        box.clear()
        box.send_keys("hello")
        d.find_element(By.CSS_SELECTOR, "form.filters button").click()
        wait(d, EC.url_contains("kind=hello"))
        kinds = {td.text for td in d.find_elements(By.CSS_SELECTOR, "table.jobs tbody td:nth-child(4)")}
        if kinds != {"hello"}:
            fail("kind filter shows %r" % kinds)
        if "matches among" not in d.find_element(By.CSS_SELECTOR, "p.summary").text:
            fail("a kind filter should say how far it searched")
        d.get(op_url + "/jobs?id=%d" % failed_id)
        if job_ids(d) != [failed_id]:
            fail("id filter shows %r" % job_ids(d))
        d.get(op_url + "/jobs?q=" + urllib.parse.quote("user7\""))
        ids = job_ids(d)
        want = [int(x) for x in q1("SELECT id FROM runner.jobs WHERE args::text LIKE '%user7\"%'"
                                   " ORDER BY id DESC").split()]
        if ids != want:
            fail("args search shows %r, expected %r" % (ids, want))
    check("filter by state, kind, id and args", filter_jobs)

    def paging():
        d.get(op_url + "/jobs?state=completed")
        p1 = job_ids(d)
        d.find_element(By.LINK_TEXT, "Older \u203a").click()
        wait(d, EC.url_contains("before="))
        p2 = job_ids(d)
        d.find_element(By.LINK_TEXT, "Older \u203a").click()
        wait(d, EC.url_contains("before=%d" % p2[-1]))
        p3 = job_ids(d)
        if d.find_elements(By.LINK_TEXT, "Older \u203a"):
            fail("a last page links to an older one")
        allc = [int(x) for x in q1("SELECT id FROM runner.jobs WHERE state = 'completed'"
                                   " ORDER BY finished_at DESC, id DESC").split()]
        if (len(p1), len(p2)) != (50, 50) or p1 + p2 + p3 != allc:
            fail("pages %d+%d+%d do not cover the %d completed jobs in order"
                 % (len(p1), len(p2), len(p3), len(allc)))
        d.find_element(By.PARTIAL_LINK_TEXT, "Newer").click()
        wait(d, EC.url_contains("after="))
        if job_ids(d) != p2:
            fail("newer from page 3 is not page 2")
        if "OFFSET" in open(op_log).read():
            fail("OFFSET?")
    check("page through jobs (keyset)", paging)

    def retry_click():
        d.get("%s/jobs/%d" % (op_url, failed_id))
        d.find_element(By.XPATH, "//button[text()='Retry']").click()
        wait(d, EC.url_contains("done=retried"))
        if "Job retried" not in d.find_element(By.CSS_SELECTOR, "p.notice").text:
            fail("no notice after retry")
        st = q1("SELECT state || ' ' || attempt FROM runner.jobs WHERE id = %d" % failed_id)
        if st != "available 0":
            fail("after retry the job is %r" % st)
    check("retry a failed job by clicking", retry_click)

    def pause_click():
        d.get(op_url + "/queues")
        row = d.find_element(By.XPATH, "//tr[td[1]/a[text()='mail']]")
        row.find_element(By.XPATH, ".//button[text()='Pause']").click()
        wait(d, EC.url_contains("done=paused"))
        if q1("SELECT paused FROM runner.queues WHERE name = 'mail'") != "t":
            fail("queue mail is not paused in the database")
        row = d.find_element(By.XPATH, "//tr[td[1]/a[text()='mail']]")
        row.find_element(By.XPATH, ".//button[text()='Resume']").click()
        wait(d, EC.url_contains("done=resumed"))
        if q1("SELECT paused FROM runner.queues WHERE name = 'mail'") != "f":
            fail("queue mail is still paused")
    check("pause and resume a queue by clicking", pause_click)

    def bulk_retry():
        d.get(op_url + "/jobs?state=failed&kind=bulkkind")
        d.find_element(By.XPATH, "//button[starts-with(text(), 'Retry all matching')]").click()
        confirm = wait(d, EC.presence_of_element_located((By.CSS_SELECTOR, "p.confirm"))).text
        if "Retry 3 jobs" not in confirm:
            fail("confirmation says %r" % confirm)
        if q1("SELECT count(*) FROM runner.jobs WHERE kind = 'bulkkind' AND state = 'failed'") != "3":
            fail("the confirmation step changed something")
        d.find_element(By.ID, "confirm").click()
        done = wait(d, EC.presence_of_element_located((By.CSS_SELECTOR, "p.notice"))).text
        if "Retried 3 of 3" not in done:
            fail("result says %r" % done)
        if q1("SELECT count(*) FROM runner.jobs WHERE kind = 'bulkkind' AND state = 'available'") != "3":
            fail("bulk retry did not retry the three jobs")
    check("bulk retry with count and confirmation", bulk_retry)

    def forged():
        # a page on another origin submitting a form to the dashboard
        evil = ("<form id=f method=post action='%s/jobs/%d/retry'>"
                "<input name=csrf value=x></form><script>document.getElementById('f').submit()"
                "</script>" % (op_url, forge_id)).encode()

        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.end_headers()
                self.wfile.write(evil)

            def log_message(self, *a):
                pass
        srv = http.server.HTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        cleanup.append(srv.shutdown)
        d.get(op_url + "/")  # the browser has a session with the dashboard
        d.get("http://127.0.0.1:%d/" % srv.server_port)
        wait(d, lambda drv: drv.current_url.startswith(op_url))
        body = d.find_element(By.TAG_NAME, "body").text
        if "refused" not in body:
            fail("cross-site form was not refused: %r" % body[:200])
        # the browser's own session, from a script: no token, then a wrong Origin
        cookie = d.get_cookie("runner_session")["value"]
        d.get(op_url + "/jobs/%d" % forge_id)
        token = d.find_element(By.NAME, "csrf").get_attribute("value")
        attempts = [("csrf=", op_url), ("", op_url), ("csrf=" + token, "http://evil.example"),
                    ("csrf=" + "0" * 64, op_url)]
        for body, origin in attempts:
            req = urllib.request.Request("%s/jobs/%d/retry" % (op_url, forge_id), data=body.encode(),
                                         method="POST",
                                         headers={"Cookie": "runner_session=" + cookie,
                                                  "Origin": origin,
                                                  "Content-Type": "application/x-www-form-urlencoded"})
            try:
                urllib.request.urlopen(req)
                fail("forged POST %r from %s was accepted" % (body[:10], origin))
            except urllib.error.HTTPError as e:
                if e.code != 403:
                    fail("forged POST got %d, expected 403" % e.code)
        try:
            urllib.request.urlopen(urllib.request.Request("%s/jobs/%d/retry" % (op_url, forge_id)))
            fail("GET on an action was accepted")
        except urllib.error.HTTPError as e:
            if e.code != 405:
                fail("GET on an action got %d" % e.code)
        if q1("SELECT state FROM runner.jobs WHERE id = %d" % forge_id) != "failed":
            fail("a forged request changed the job")
        # with the token, from the right origin, the same request works: the checks above
        # failed for the reasons tested, not for another
        req = urllib.request.Request("%s/jobs/%d/retry" % (op_url, forge_id), data=("csrf=" + token).encode(),
                                     method="POST",
                                     headers={"Cookie": "runner_session=" + cookie, "Origin": op_url,
                                              "Content-Type": "application/x-www-form-urlencoded"})
        urllib.request.urlopen(req)
        if q1("SELECT state FROM runner.jobs WHERE id = %d" % forge_id) != "available":
            fail("the genuine POST did not retry the job")
    check("forged POSTs refused (CSRF token, Origin, SameSite)", forged)

    def read_only():
        for p in ["/", "/queues", "/jobs?state=failed", "/jobs/%d" % xss_id, "/jobs?state=running",
                  "/jobs/%d" % int(q1("SELECT min(id) FROM runner.jobs WHERE state = 'running'"))]:
            d.get(vw_url + p)
            wait(d, EC.presence_of_element_located((By.TAG_NAME, "h1")))
            posts = d.find_elements(By.CSS_SELECTOR, "form[method=post]")
            if posts:
                fail("%s: the read-only dashboard shows %d action forms" % (p, len(posts)))
            if "read-only" not in d.find_element(By.CSS_SELECTOR, "nav .who").text:
                fail("%s: no read-only tag" % p)
            inert(d, "viewer " + p)
        err = psql("SELECT runner.retry_job(%d)" % xss_id, url=url_for(DB, VIEWER), check=False)
        if "permission denied" not in err:
            fail("the viewer role may run retry_job: %r" % err)
        # the operator dashboard does show them
        d.get(op_url + "/jobs/%d" % xss_id)
        if not d.find_elements(By.XPATH, "//button[text()='Retry']"):
            fail("the operator dashboard shows no retry button")
    check("read-only role shows no actions", read_only)

    def auto_refresh():
        d.get(op_url + "/")
        label = d.find_element(By.CSS_SELECTOR, "label.refresh")
        if not label.is_displayed():
            fail("the auto-refresh switch is hidden with scripts on")
    check("auto-refresh switch appears with scripts on", auto_refresh)

    def no_scripts():
        d2 = browser(scripts=False)
        d2.get(op_url + "/queues")
        if d2.find_element(By.CSS_SELECTOR, "label.refresh").is_displayed():
            fail("the auto-refresh switch shows without scripts")
        row = d2.find_element(By.XPATH, "//tr[td[1]/a[text()='default']]")
        row.find_element(By.XPATH, ".//button[text()='Pause']").click()
        WebDriverWait(d2, WAIT_S).until(EC.url_contains("done=paused"))
        if q1("SELECT paused FROM runner.queues WHERE name = 'default'") != "t":
            fail("pause without scripts did not pause")
        d2.get(op_url + "/jobs?state=completed")
        d2.find_element(By.LINK_TEXT, "Older \u203a").click()
        WebDriverWait(d2, WAIT_S).until(EC.url_contains("before="))
        d2.quit()
    check("pages and forms work with scripts off", no_scripts)

    def authentication():
        r = subprocess.run([BIN, "--database-url", url_for(DB, VIEWER), "web", "--listen",
                            "0.0.0.0:0"], capture_output=True, text=True, timeout=30)
        if r.returncode != 2 or "refusing" not in r.stderr:
            fail("web on 0.0.0.0 without credentials: exit %d, %r" % (r.returncode, r.stderr))
        h = subprocess.run(["openssl", "passwd", "-6", "-salt", "browsertest", "pw 'x"],
                           capture_output=True, text=True, timeout=30).stdout.strip()
        p, url, _ = start_web(VIEWER, {"RUNNER_WEB_AUTH": "ops:" + h})
        try:
            urllib.request.urlopen(url + "/")
            fail("no credentials, but 200")
        except urllib.error.HTTPError as e:
            if e.code != 401 or "Basic" not in e.headers.get("WWW-Authenticate", ""):
                fail("expected a 401 asking for Basic, got %d" % e.code)
        import base64
        for cred, want in [("ops:pw 'x", 200), ("ops:pw", 401), ("other:pw 'x", 401)]:
            req = urllib.request.Request(url + "/", headers={
                "Authorization": "Basic " + base64.b64encode(cred.encode()).decode()})
            try:
                code = urllib.request.urlopen(req).status
            except urllib.error.HTTPError as e:
                code = e.code
            if code != want:
                fail("%s: got %d, expected %d" % (cred, code, want))
        stop(p)
    check("basic auth, and no public listen without it", authentication)

    def hide_args():
        p, url, _ = start_web(VIEWER, args=("--hide-args",))
        d.get("%s/jobs/%d" % (url, failed_id))
        main_text = d.find_element(By.TAG_NAME, "main").text
        if "cat.png" in main_text or "Hidden" not in main_text:
            fail("--hide-args still shows the args")
        d.get(url + "/jobs?q=cat.png")
        if d.find_elements(By.NAME, "q") or "cat.png" in d.find_element(By.CSS_SELECTOR, "table.jobs").text:
            fail("--hide-args still searches or shows args")
        stop(p)
    check("--hide-args hides args from every page", hide_args)

    stop(op)
    if op.returncode != 0:
        fail("runner web exited %d after SIGTERM" % op.returncode)


if __name__ == "__main__":
    status = 0
    try:
        main()
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        status = 1
    finally:
        for fn in reversed(cleanup):
            try:
                fn()
            except Exception:  # noqa: BLE001
                pass
    if failures:
        print("browser test: %d check(s) failed: %s" % (len(failures), ", ".join(failures)))
        status = 1
    sys.exit(status)
