/* web_auth.c - HTTP basic authentication against crypt(3) hashes, session ids, CSRF
 * tokens and the Origin check.
 *
 * DESIGN: the dashboard keeps no state about its visitors. A session is a random id in a
 * cookie (HttpOnly, SameSite=Strict); the CSRF token of its forms is an HMAC of that id
 * (and of the authenticated user) under a secret made at process start, so a token can
 * be checked without remembering it, and a page of another site, which can neither read
 * the cookie nor compute the HMAC, cannot forge a form. A restart changes the secret:
 * forms rendered before it are refused once, and the next page load fixes that. */
#include "web_auth.h"

#include <crypt.h>
#include <errno.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "util.h"

bool web_ct_equal(const void *a, size_t alen, const void *b, size_t blen)
{
    const unsigned char *x = a, *y = b;
    size_t n = alen > blen ? alen : blen;
    unsigned char diff = alen != blen;
    for (size_t i = 0; i < n; i++) {
        unsigned char cx = i < alen ? x[i] : 0, cy = i < blen ? y[i] : 0;
        diff |= (unsigned char)(cx ^ cy);
    }
    return diff == 0;
}

static int b64val(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

long web_base64_decode(const char *in, char *out, size_t outcap)
{
    size_t len = strlen(in);
    if (len % 4 != 0)
        return -1;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        int v[4];
        int pad = 0;
        for (int k = 0; k < 4; k++) {
            char c = in[i + k];
            if (c == '=' && i + 4 == len && k >= 2) {
                v[k] = 0;
                pad++;
            } else if (pad > 0 || (v[k] = b64val(c)) < 0) {
                return -1;
            }
        }
        unsigned bits = (unsigned)v[0] << 18 | (unsigned)v[1] << 12 | (unsigned)v[2] << 6 |
                        (unsigned)v[3];
        int bytes = 3 - pad;
        if (o + (size_t)bytes >= outcap)
            return -1;
        out[o++] = (char)(bits >> 16);
        if (bytes > 1)
            out[o++] = (char)(bits >> 8 & 0xff);
        if (bytes > 2)
            out[o++] = (char)(bits & 0xff);
    }
    out[o] = '\0';
    return (long)o;
}

int web_basic_parse(const char *header, char *user, size_t usercap, char *password,
                    size_t passcap)
{
    if (!header || strncasecmp(header, "Basic ", 6) != 0)
        return -1;
    const char *b64 = header + 6;
    while (*b64 == ' ')
        b64++;
    char buf[1024];
    long n = web_base64_decode(b64, buf, sizeof buf);
    if (n < 0 || memchr(buf, '\0', (size_t)n))
        return -1;
    const char *colon = strchr(buf, ':');
    if (!colon)
        return -1;
    size_t ul = (size_t)(colon - buf), pl = (size_t)n - ul - 1;
    if (ul >= usercap || pl >= passcap)
        return -1;
    memcpy(user, buf, ul);
    user[ul] = '\0';
    memcpy(password, colon + 1, pl);
    password[pl] = '\0';
    return 0;
}

int web_creds_parse(web_creds *c, const char *text, const char *source, char *err,
                    size_t errlen)
{
    int line = 0;
    const char *p = text;
    while (*p) {
        line++;
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        while (len > 0 && (p[len - 1] == '\r' || p[len - 1] == ' ' || p[len - 1] == '\t'))
            len--;
        if (len > 0 && p[0] != '#') {
            const char *colon = memchr(p, ':', len);
            if (!colon || colon == p)
                return errf(err, errlen, "invalid credentials at %s:%d: expected \"user:hash\"",
                            source, line);
            const char *hash = colon + 1;
            size_t hl = len - (size_t)(hash - p);
            if (hl < 4 || hash[0] != '$')
                return errf(err, errlen,
                            "invalid credentials at %s:%d: the password must be a crypt(3) "
                            "hash such as \"$6$...\" (openssl passwd -6), not plain text",
                            source, line);
            c->users = xrealloc(c->users, (c->n + 1) * sizeof *c->users);
            c->users[c->n].name = xstrndup(p, (size_t)(colon - p));
            c->users[c->n].hash = xstrndup(hash, hl);
            c->n++;
        }
        if (!nl)
            break;
        p = nl + 1;
    }
    return 0;
}

int web_creds_load(web_creds *c, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return errf(err, errlen, "could not open \"%s\": %s", path, strerror(errno));
    strbuf sb;
    sb_init(&sb);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        sb_append(&sb, buf, n);
    int bad = ferror(f);
    fclose(f);
    int rc = bad ? errf(err, errlen, "could not read \"%s\"", path)
                 : web_creds_parse(c, sb.data ? sb.data : "", path, err, errlen);
    sb_free(&sb);
    if (rc == 0 && c->n == 0)
        rc = errf(err, errlen, "no credentials in \"%s\"", path);
    return rc;
}

void web_creds_free(web_creds *c)
{
    for (size_t i = 0; i < c->n; i++) {
        free(c->users[i].name);
        free(c->users[i].hash);
    }
    free(c->users);
    *c = (web_creds){0};
}

bool web_creds_check(const web_creds *c, const char *user, const char *password)
{
    /* a well-formed setting that no password matches: unknown users cost the same crypt */
    static const char dummy[] = "$6$rounds=5000$runnerdummysalt$";
    const char *hash = dummy;
    bool known = false;
    size_t ul = strlen(user);
    for (size_t i = 0; i < c->n; i++) {
        if (web_ct_equal(c->users[i].name, strlen(c->users[i].name), user, ul) && !known) {
            hash = c->users[i].hash;
            known = true;
        }
    }
    struct crypt_data *data = xcalloc(1, sizeof *data);
#ifdef XCRYPT_VERSION_NUM
    /* libxcrypt's own name: sanitizers intercept crypt_r, and a linker that drops
     * libcrypt as "not needed" leaves the interceptor without the real function */
    const char *out = crypt_rn(password, hash, data, (int)sizeof *data);
#else
    const char *out = crypt_r(password, hash, data);
#endif
    bool ok = out && out[0] != '*' && web_ct_equal(out, strlen(out), hash, strlen(hash));
    free(data);
    return ok && known;
}

int web_random(void *buf, size_t n, char *err, size_t errlen)
{
    unsigned char *p = buf;
    while (n > 0) {
        ssize_t got = getrandom(p, n, 0);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            return errf(err, errlen, "could not read random bytes: %s", strerror(errno));
        }
        p += got;
        n -= (size_t)got;
    }
    return 0;
}

static void hex(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

int web_session_new(char out[WEB_SESSION_LEN + 1], char *err, size_t errlen)
{
    unsigned char raw[WEB_SESSION_LEN / 2];
    if (web_random(raw, sizeof raw, err, errlen) < 0)
        return -1;
    hex(raw, sizeof raw, out);
    return 0;
}

bool web_session_valid(const char *s)
{
    return s && strlen(s) == WEB_SESSION_LEN && strspn(s, "0123456789abcdef") == WEB_SESSION_LEN;
}

void web_csrf_token(const unsigned char secret[WEB_SECRET_LEN], const char *session,
                    const char *user, char out[WEB_TOKEN_LEN + 1])
{
    strbuf msg;
    sb_init(&msg);
    sb_printf(&msg, "csrf\n%s\n%s", session, user ? user : "");
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    HMAC(EVP_sha256(), secret, WEB_SECRET_LEN, (const unsigned char *)msg.data, msg.len, mac,
         &maclen);
    sb_free(&msg);
    hex(mac, WEB_TOKEN_LEN / 2, out);
}

bool web_csrf_check(const unsigned char secret[WEB_SECRET_LEN], const char *session,
                    const char *user, const char *token)
{
    if (!web_session_valid(session) || !token)
        return false;
    char want[WEB_TOKEN_LEN + 1];
    web_csrf_token(secret, session, user, want);
    return web_ct_equal(want, WEB_TOKEN_LEN, token, strlen(token));
}

int web_cookie_get(const char *header, const char *name, char *out, size_t outcap)
{
    if (!header)
        return -1;
    size_t nl = strlen(name);
    const char *p = header;
    while (*p) {
        while (*p == ' ' || *p == ';')
            p++;
        const char *end = strchr(p, ';');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > nl && strncmp(p, name, nl) == 0 && p[nl] == '=') {
            size_t vl = len - nl - 1;
            if (vl >= outcap)
                return -1;
            memcpy(out, p + nl + 1, vl);
            out[vl] = '\0';
            return 0;
        }
        if (!end)
            break;
        p = end + 1;
    }
    return -1;
}

/* same_origin: url is "http://HOST" or "https://HOST", optionally followed by a path. */
static bool same_origin(const char *url, const char *host, bool path_allowed)
{
    const char *rest;
    if (strncmp(url, "http://", 7) == 0)
        rest = url + 7;
    else if (strncmp(url, "https://", 8) == 0)
        rest = url + 8;
    else
        return false;
    size_t hl = strlen(host);
    if (strncasecmp(rest, host, hl) != 0)
        return false;
    char next = rest[hl];
    return next == '\0' || (path_allowed && next == '/');
}

bool web_origin_ok(const char *origin, const char *referer, const char *host)
{
    if (!host || !*host)
        return false;
    if (origin && *origin)
        return same_origin(origin, host, false);
    if (referer && *referer)
        return same_origin(referer, host, true);
    return false;
}
