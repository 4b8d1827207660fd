/* web_auth.h - who may use the dashboard: HTTP basic credentials checked against crypt(3)
 * hashes, and the CSRF defences of its forms (a token bound to the session cookie, and
 * the Origin of every POST). */
#ifndef RUNNER_WEB_AUTH_H
#define RUNNER_WEB_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#define WEB_SECRET_LEN 32
#define WEB_SESSION_LEN 32 /* hex characters of a session id */
#define WEB_TOKEN_LEN 64   /* hex characters of a CSRF token */
#define WEB_SESSION_COOKIE "runner_session"

/* web_ct_equal compares two byte strings in time that depends only on their lengths. */
bool web_ct_equal(const void *a, size_t alen, const void *b, size_t blen);

/* web_base64_decode decodes standard base64 (with padding) into out, at most outcap - 1
 * bytes, NUL-terminated. Returns the decoded length, or -1 when malformed or too long. */
long web_base64_decode(const char *in, char *out, size_t outcap);

/* web_basic_parse takes an Authorization header "Basic base64(user:password)" apart. */
int web_basic_parse(const char *header, char *user, size_t usercap, char *password,
                    size_t passcap);

/* The configured users: "user:hash" lines, hash in crypt(3) form ($6$..., $y$..., $2b$...). */
typedef struct web_user {
    char *name;
    char *hash;
} web_user;

typedef struct web_creds {
    web_user *users;
    size_t n;
} web_creds;

/* web_creds_parse reads "user:hash" lines (blank lines and lines starting with # are
 * skipped); source names the text in messages. Adds to c. */
int web_creds_parse(web_creds *c, const char *text, const char *source, char *err,
                    size_t errlen);
/* web_creds_load reads the file web.auth_file names. */
int web_creds_load(web_creds *c, const char *path, char *err, size_t errlen);
void web_creds_free(web_creds *c);

/* web_creds_check tells whether user and password match a configured user. It runs
 * crypt(3) even for an unknown user, and compares hashes in constant time. */
bool web_creds_check(const web_creds *c, const char *user, const char *password);

/* web_random fills buf with n bytes from the kernel's random source. */
int web_random(void *buf, size_t n, char *err, size_t errlen);

/* web_session_new writes a fresh session id (WEB_SESSION_LEN hex chars + NUL). */
int web_session_new(char out[WEB_SESSION_LEN + 1], char *err, size_t errlen);
/* web_session_valid: exactly WEB_SESSION_LEN lowercase hex characters. */
bool web_session_valid(const char *s);

/* web_csrf_token is HMAC-SHA256(secret, session "\n" user) in hex: a form token that only
 * this process could have made, for this session (and authenticated user; "" without). */
void web_csrf_token(const unsigned char secret[WEB_SECRET_LEN], const char *session,
                    const char *user, char out[WEB_TOKEN_LEN + 1]);
/* web_csrf_check compares a submitted token with the expected one in constant time. */
bool web_csrf_check(const unsigned char secret[WEB_SECRET_LEN], const char *session,
                    const char *user, const char *token);

/* web_cookie_get copies the value of cookie name from a Cookie header ("a=1; b=2") into
 * out; -1 when absent or too long. */
int web_cookie_get(const char *header, const char *name, char *out, size_t outcap);

/* web_origin_ok decides whether a POST comes from the dashboard's own pages: its Origin
 * header (or, when a browser sent none, its Referer) must be http(s)://HOST with HOST
 * the request's Host header. Neither present: refused. */
bool web_origin_ok(const char *origin, const char *referer, const char *host);

#endif
