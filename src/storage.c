/* SPDX-License-Identifier: MIT */
/* The certmagic storage: names and paths (see storage.h; the other parts
 * are in storage-*.c). */

#include <curl/curl.h>
#include <stdarg.h>
#include <time.h>

#include "storage-internal.h"

static void curl_freep(char **p) {
        curl_free(*p);
}
DEFINE_TRIVIAL_CLEANUP_FUNC(CURLU *, curl_url_cleanup);

int storage_fail(char **ret_error, int r, const char *fmt, ...) {
        va_list ap;

        if (!ret_error)
                return r;
        free(*ret_error);
        va_start(ap, fmt);
        if (vasprintf(ret_error, fmt, ap) < 0)
                *ret_error = NULL;
        va_end(ap);
        return r;
}

usec_t storage_now(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_REALTIME, &ts);
        return (usec_t) ts.tv_sec * USEC_PER_SEC + (usec_t) ts.tv_nsec / 1000;
}

/* ---- names ---------------------------------------------------------------------------- */

/* safe_key() works on one unit per input rune. Non-ASCII runes are removed in the
 * end, so they only need a placeholder, except the two whose lowercase is ASCII and
 * the white space TrimSpace() removes (Go's unicode.IsSpace). UTF-8 lead bytes never
 * occur inside another rune, and Go decodes an invalid byte as one rune, so matching
 * these sequences at any offset decodes exactly as Go does. */
#define UNIT_SPACE 0x80
#define UNIT_OTHER 0x81
static const struct {
        const char *utf8;
        unsigned char unit;
} special_runes[] = {
        { "\xc4\xb0", 'i' },     { "\xe2\x84\xaa", 'k' }, /* U+0130, U+212A KELVIN SIGN */
        { "\xc2\x85", UNIT_SPACE },     { "\xc2\xa0", UNIT_SPACE },
        { "\xe1\x9a\x80", UNIT_SPACE }, { "\xe2\x80\xa8", UNIT_SPACE },
        { "\xe2\x80\xa9", UNIT_SPACE }, { "\xe2\x80\xaf", UNIT_SPACE },
        { "\xe2\x81\x9f", UNIT_SPACE }, { "\xe3\x80\x80", UNIT_SPACE },
};

static unsigned char rune_unit(const char *s, size_t *len) {
        *len = 1;
        if ((unsigned char) s[0] < 0x80)
                return (unsigned char) (s[0] >= 'A' && s[0] <= 'Z' ? s[0] - 'A' + 'a' : s[0]);
        if (startswith(s, "\xe2\x80") && (unsigned char) s[2] >= 0x80 &&
            (unsigned char) s[2] <= 0x8a) { /* U+2000..U+200A */
                *len = 3;
                return UNIT_SPACE;
        }
        for (size_t i = 0; i < ELEMENTSOF(special_runes); i++)
                if (startswith(s, special_runes[i].utf8)) {
                        *len = strlen(special_runes[i].utf8);
                        return special_runes[i].unit;
                }
        return UNIT_OTHER;
}

static bool is_trim_unit(unsigned char c) {
        return c == UNIT_SPACE || (c && strchr(" \t\n\v\f\r", c));
}

static bool is_safe_char(unsigned char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               (c && strchr("_@.-", c));
}

int safe_key(const char *s, char **ret) {
        size_t n = strlen(s), m = 0, start = 0, end, k = 0;
        _cleanup_free_ unsigned char *u = malloc(n + 1);
        _cleanup_free_ char *out = malloc(n * 9 + 1); /* "wildcard_" is the longest */

        if (!u || !out)
                return -ENOMEM;
        /* strings.ToLower, then strings.TrimSpace */
        for (size_t i = 0, l; i < n; i += l)
                u[m++] = rune_unit(s + i, &l);
        while (start < m && is_trim_unit(u[start]))
                start++;
        for (end = m; end > start && is_trim_unit(u[end - 1]);)
                end--;

        /* strings.NewReplacer(" ", "_", "+", "_plus_", "*", "wildcard_", ":", "-", "..", "")
         * (one left-to-right pass), then regexp [^\w@.-] replaced by "". */
        for (size_t i = start; i < end; i++) {
                const char *repl = u[i] == ' ' ? "_" : u[i] == '+' ? "_plus_" :
                                   u[i] == '*' ? "wildcard_" : u[i] == ':' ? "-" : NULL;
                if (repl) {
                        memcpy(out + k, repl, strlen(repl));
                        k += strlen(repl);
                } else if (u[i] == '.' && i + 1 < end && u[i + 1] == '.')
                        i++;
                else if (is_safe_char(u[i]))
                        out[k++] = (char) u[i];
        }
        out[k] = 0;
        *ret = TAKE_PTR(out);
        return 0;
}

int issuer_key_from_directory_url(const char *url, char **ret) {
        _cleanup_(curl_url_cleanupp) CURLU *u = curl_url();
        _cleanup_(curl_freep) char *host = NULL, *port = NULL, *path = NULL;
        _cleanup_free_ char *key = NULL;
        size_t a = 0, b = 0;
        CURLUcode c;

        if (!u)
                return -ENOMEM;
        /* Go's url.Parse keeps dot segments: CURLU_PATH_AS_IS. */
        c = curl_url_set(u, CURLUPART_URL, url, CURLU_PATH_AS_IS | CURLU_NON_SUPPORT_SCHEME);
        if (c == CURLUE_OK)
                c = curl_url_get(u, CURLUPART_HOST, &host, 0);
        if (c == CURLUE_OUT_OF_MEMORY)
                return -ENOMEM;
        if (c != CURLUE_OK || !host || !*host)
                return -EINVAL;
        /* Go's URL.Host has the port as written; URL.Path is decoded. */
        if (curl_url_get(u, CURLUPART_PORT, &port, 0) == CURLUE_OUT_OF_MEMORY ||
            curl_url_get(u, CURLUPART_PATH, &path, CURLU_URLDECODE) == CURLUE_OUT_OF_MEMORY)
                return -ENOMEM;
        if (path) {
                for (char *p = path; *p; p++)
                        if (*p == '/' || *p == '\\')
                                *p = '-';
                for (b = strlen(path); b > 0 && path[b - 1] == '-'; b--)
                        ;
                while (a < b && path[a] == '-')
                        a++;
        }
        if (asprintf(&key, "%s%s%s%s%.*s", host, port ? ":" : "", strempty(port),
                     b > a ? "-" : "", (int) (b - a), path ? path + a : "") < 0)
                return -ENOMEM;
        return safe_key(key, ret);
}

/* A component must not be empty, "." or "..", or the layout breaks. */
static bool component_ok(const char *s) {
        return *s && !streq(s, ".") && !streq(s, "..");
}

/* The issuer key is used as it is: a raw one ("host:port-dir") would silently name
 * another directory than certmagic's. */
static bool issuer_key_ok(const char *s) {
        for (const char *p = s; *p; p++)
                if (!is_safe_char((unsigned char) *p))
                        return false;
        return component_ok(s);
}

int storage_cert_path(const char *root, const char *issuer_key, const char *domain,
                      StorageCertFile f, char **ret) {
        static const char *const suffix[] = { ".crt", ".key", ".json" };
        _cleanup_free_ char *name = NULL;
        int r;

        if ((unsigned) f >= _STORAGE_CERT_FILE_MAX || !issuer_key_ok(issuer_key))
                return -EINVAL;
        for (const char *p = domain; *p; p++)
                if ((unsigned char) *p >= 0x80)
                        return -EINVAL;
        r = safe_key(domain, &name);
        if (r < 0)
                return r;
        if (!component_ok(name))
                return -EINVAL;
        return asprintf(ret, "%s/certificates/%s/%s/%s%s", root, issuer_key, name, name,
                        suffix[f]) < 0 ? -ENOMEM : 0;
}

int storage_account_path(const char *root, const char *issuer_key, const char *email,
                         StorageAccountFile f, char **ret) {
        _cleanup_free_ char *dir = NULL, *local = NULL, *file = NULL;
        const char *at;
        int r;

        if ((unsigned) f >= _STORAGE_ACCOUNT_FILE_MAX || !issuer_key_ok(issuer_key))
                return -EINVAL;
        if (!email || !*email)
                email = "default";
        r = safe_key(email, &dir);
        if (r < 0)
                return r;
        if (!component_ok(dir))
                return -EINVAL;

        /* certmagic's emailUsername() runs on the lowercased address; lowering moves no
         * '@' and safe_key() lowers anyway. */
        at = strchr(email, '@');
        local = !at ? strdup(email) : at == email ? strdup(email + 1) : strndup(email, at - email);
        if (!local)
                return -ENOMEM;
        r = safe_key(*local ? local : f == STORAGE_ACCOUNT_REG ? "registration" : "private",
                     &file);
        if (r < 0)
                return r;
        return asprintf(ret, "%s/acme/%s/users/%s/%s%s", root, issuer_key, dir, file,
                        f == STORAGE_ACCOUNT_REG ? ".json" : ".key") < 0 ? -ENOMEM : 0;
}

int storage_lock_path(const char *root, const char *name, char **ret) {
        _cleanup_free_ char *s = NULL;
        int r;

        r = safe_key(name, &s);
        if (r < 0)
                return r;
        if (!component_ok(s))
                return -EINVAL;
        return asprintf(ret, "%s/locks/%s.lock", root, s) < 0 ? -ENOMEM : 0;
}

int storage_lock_name_issue_cert(const char *domain, char **ret) {
        return asprintf(ret, "issue_cert_%s", domain) < 0 ? -ENOMEM : 0;
}

int storage_lock_name_register_account(const char *email, char **ret) {
        /* certmagic's accountRegLockKey() */
        return asprintf(ret, "register_acme_account%s%s", email && *email ? "_" : "",
                        strempty(email)) < 0 ? -ENOMEM : 0;
}

int storage_root(char **ret) {
        const char *e = getenv("XDG_DATA_HOME"), *suffix = "/certmagic";
        size_t l;

        if (!e || e[0] != '/') {
                e = getenv("HOME");
                if (!e || e[0] != '/')
                        return -ENXIO;
                suffix = "/.local/share/certmagic";
        }
        for (l = strlen(e); l > 0 && e[l - 1] == '/'; l--) /* like Go's filepath.Join */
                ;
        return asprintf(ret, "%.*s%s", (int) l, e, suffix) < 0 ? -ENOMEM : 0;
}
