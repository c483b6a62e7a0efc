/* SPDX-License-Identifier: MIT */
#include <curl/curl.h>
#include <dirent.h>
#include <fcntl.h>
#include <gnutls/x509.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>

#include "log.h"
#include "storage.h"
#include "strv.h"
#include "util.h"

static inline void json_object_putp(json_object **o) {
        if (*o)
                json_object_put(*o);
}
#define _cleanup_json_ _cleanup_(json_object_putp)

static void curl_freep(char **p) {
        curl_free(*p);
}
DEFINE_TRIVIAL_CLEANUP_FUNC(CURLU *, curl_url_cleanup);

static int fail(char **ret_error, int r, const char *fmt, ...) _printf_(3, 4);
static int fail(char **ret_error, int r, const char *fmt, ...) {
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

/* ---- files ---------------------------------------------------------------------------- */

/* mkdir -p for the parents of path; new directories 0700 whatever the umask. */
static int mkdir_parents(const char *path) {
        _cleanup_free_ char *p = strdup(path);

        if (!p)
                return -ENOMEM;
        for (char *s = strchr(p + 1, '/'); s; s = strchr(s + 1, '/')) {
                *s = 0;
                if (mkdir(p, 0700) >= 0 ? chmod(p, 0700) < 0 : errno != EEXIST)
                        return -errno;
                *s = '/';
        }
        return 0;
}

static int fsync_directory_of(const char *path) {
        _cleanup_free_ char *dir = strndup(path, strrchr(path, '/') - path);
        _cleanup_close_ int fd = -EBADF;

        if (!dir)
                return -ENOMEM;
        fd = open(*dir ? dir : "/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        return fsync(fd) < 0 ? -errno : 0;
}

/* A complete, fsynced temporary file next to path, named like certmagic's
 * atomicfile does (".tmp-<name>"), shortened to stay under NAME_MAX. */
static int write_temp(const char *path, const void *data, size_t n, char **ret_tmp) {
        _cleanup_free_ char *tmp = NULL;
        const char *base = strrchr(path, '/'), *p = data;
        int fd, r = 0;

        if (!base)
                return -EINVAL;
        if (asprintf(&tmp, "%.*s/.tmp-%.200sXXXXXX", (int) (base - path), path, base + 1) < 0)
                return -ENOMEM;
        fd = mkostemp(tmp, O_CLOEXEC); /* O_CREAT|O_EXCL, 0600 */
        if (fd < 0)
                return -errno;
        if (fchmod(fd, 0600) < 0)
                r = -errno;
        while (r >= 0 && n > 0) {
                ssize_t k = write(fd, p, n);
                if (k < 0 && errno != EINTR)
                        r = -errno;
                else if (k > 0)
                        p += k, n -= (size_t) k;
        }
        if (r >= 0 && fsync(fd) < 0)
                r = -errno;
        if (close(fd) < 0 && r >= 0)
                r = -errno;
        if (r < 0) {
                (void) unlink(tmp);
                return r;
        }
        *ret_tmp = TAKE_PTR(tmp);
        return 0;
}

/* Removes what a writer that died (kill -9, power loss) left in dir: entries
 * named prefix* that have not changed for STORAGE_LOCK_STALE_USEC (a live
 * writer finishes within milliseconds), files and directories of files. */
static void remove_stale_temps(const char *dir, const char *prefix) {
        _cleanup_close_ int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        int64_t now = (int64_t) storage_now();
        struct dirent *de;
        DIR *d;

        if (fd < 0 || !(d = fdopendir(fd)))
                return;
        fd = -EBADF; /* d owns it now */
        while ((de = readdir(d))) {
                struct stat st;
                int sub;

                if (!startswith(de->d_name, prefix) ||
                    fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
                    now - ((int64_t) st.st_mtim.tv_sec * (int64_t) USEC_PER_SEC +
                           st.st_mtim.tv_nsec / 1000) <= (int64_t) STORAGE_LOCK_STALE_USEC)
                        continue;
                if (!S_ISDIR(st.st_mode)) {
                        (void) unlinkat(dirfd(d), de->d_name, 0);
                        continue;
                }
                sub = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (sub >= 0) {
                        DIR *sd = fdopendir(sub);
                        struct dirent *e;

                        if (!sd) {
                                close(sub);
                                continue;
                        }
                        while ((e = readdir(sd)))
                                if (!streq(e->d_name, ".") && !streq(e->d_name, ".."))
                                        (void) unlinkat(dirfd(sd), e->d_name, 0);
                        closedir(sd);
                }
                (void) unlinkat(dirfd(d), de->d_name, AT_REMOVEDIR);
        }
        closedir(d);
}

/* The ".tmp-<name>" prefix of path's temporary files, and its directory. */
static int temp_prefix(const char *path, char **ret_dir, char **ret_prefix) {
        const char *base = strrchr(path, '/');

        if (!base)
                return -EINVAL;
        *ret_dir = strndup(path, base - path);
        if (!*ret_dir || asprintf(ret_prefix, ".tmp-%.200s", base + 1) < 0) {
                free(*ret_dir);
                return -ENOMEM;
        }
        return 0;
}

int storage_write_file(const char *path, const void *data, size_t n) {
        _cleanup_free_ char *tmp = NULL, *dir = NULL, *prefix = NULL;
        int r;

        if (temp_prefix(path, &dir, &prefix) >= 0)
                remove_stale_temps(*dir ? dir : "/", prefix);
        r = mkdir_parents(path);
        if (r >= 0)
                r = write_temp(path, data, n, &tmp);
        if (r < 0)
                return r;
        if (rename(tmp, path) < 0) {
                r = -errno;
                (void) unlink(tmp);
                return r;
        }
        return fsync_directory_of(path);
}

/* A whole regular file, NUL-terminated. -ENOENT when absent, -EBADMSG when not a
 * regular file or too large, the errno when it cannot be read. Opened relative to
 * dfd (the last component of path when dfd is a directory), named path. */
static int read_file_at(int dfd, const char *path, bool secret, char **ret, size_t *ret_len,
                        char **ret_error) {
        _cleanup_close_ int fd = -EBADF;
        struct stat st;
        int r;

        fd = openat(dfd, dfd == AT_FDCWD || !strrchr(path, '/') ? path : strrchr(path, '/') + 1,
                    O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0 && errno == ENOENT)
                return fail(ret_error, -ENOENT, _("%s: not found"), path);
        if (fd < 0 || fstat(fd, &st) < 0) {
                r = -errno;
                return fail(ret_error, r, _("%s: cannot open: %s"), path, strerror(-r));
        }
        if (!S_ISREG(st.st_mode))
                return fail(ret_error, -EBADMSG, _("%s: not a regular file"), path);
        if (secret && (st.st_mode & 077)) {
                /* certmagic writes keys 0600; one that others may read (copied
                 * in with a wide umask, say) is restricted, and said so. */
                if (fchmod(fd, 0600) < 0)
                        log_warning_errno(errno, "%s: private key readable by others (mode %04o), "
                                          "cannot restrict it: %m", path,
                                          (unsigned) (st.st_mode & 07777));
                else
                        log_warning("%s: private key was readable by others (mode %04o), "
                                    "restricted to 0600", path, (unsigned) (st.st_mode & 07777));
        }
        /* It may be a key: what was read is wiped when it is not handed out. */
        r = read_fd_erasable(fd, STORAGE_FILE_MAX, ret, ret_len);
        if (r == -EFBIG)
                return fail(ret_error, -EBADMSG, _("%s: too large"), path);
        if (r < 0)
                return fail(ret_error, r, _("%s: cannot read: %s"), path, strerror(-r));
        return 0;
}

static int read_file(const char *path, bool secret, char **ret, size_t *ret_len,
                     char **ret_error) {
        return read_file_at(AT_FDCWD, path, secret, ret, ret_len, ret_error);
}

/* ---- JSON ----------------------------------------------------------------------------- */

/* Serializes as Go's encoding/json does (json.MarshalIndent(v, "", "\t") when pretty,
 * json.Marshal otherwise): json-c lays it out, then the differences are fixed. Raw
 * newlines and non-ASCII bytes occur only outside strings resp. inside them, so
 * these rewrites are exact: Go escapes <, >, & and U+2028/U+2029, and writes empty
 * containers as [] and {} where json-c breaks the line. */
static int json_format_go(json_object *o, bool pretty, char **ret) {
        int flags = JSON_C_TO_STRING_NOSLASHESCAPE |
                    (pretty ? JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
                                      JSON_C_TO_STRING_PRETTY_TAB :
                              JSON_C_TO_STRING_PLAIN);
        const char *s = json_object_to_json_string_ext(o, flags);
        char *out, *p;

        if (!s || !(out = p = malloc(strlen(s) * 6 + 1)))
                return -ENOMEM;
        for (const char *t = s; *t; t++) {
                size_t j = 1;

                if (*t == '<' || *t == '>' || *t == '&')
                        p += sprintf(p, "\\u%04x", (unsigned) *t);
                else if (startswith(t, "\xe2\x80\xa8") || startswith(t, "\xe2\x80\xa9")) {
                        p += sprintf(p, "\\u%s", t[2] == '\xa8' ? "2028" : "2029");
                        t += 2;
                } else if ((*t == '[' || *t == '{') && t[1] == '\n') {
                        while (t[++j] == '\t')
                                ;
                        *p++ = *t;
                        if (t[j] == (*t == '[' ? ']' : '}'))
                                *p++ = *(t += j);
                } else
                        *p++ = *t;
        }
        *p = 0;
        *ret = out;
        return 0;
}

/* A whole file as one JSON object, as strictly as Go's json.Unmarshal. */
static int json_parse_file(const char *path, const char *data, size_t len, json_object **ret,
                           char **ret_error) {
        _cleanup_json_ json_object *o = NULL;
        struct json_tokener *tok;
        enum json_tokener_error e;
        size_t end;

        if (len == 0)
                return fail(ret_error, -EBADMSG, _("%s: empty file"), path);
        tok = json_tokener_new();
        if (!tok)
                return -ENOMEM;
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
        o = json_tokener_parse_ex(tok, data, (int) len);
        e = json_tokener_get_error(tok);
        end = json_tokener_get_parse_end(tok);
        json_tokener_free(tok);

        if (e == json_tokener_continue)
                return fail(ret_error, -EBADMSG, _("%s: truncated JSON"), path);
        if (e != json_tokener_success)
                return fail(ret_error, -EBADMSG, _("%s: corrupt JSON: %s"), path,
                            json_tokener_error_desc(e));
        while (end < len && strchr(" \t\r\n", data[end]) && data[end])
                end++;
        if (end < len)
                return fail(ret_error, -EBADMSG, _("%s: corrupt JSON: trailing data"), path);
        if (!json_object_is_type(o, json_type_object))
                return fail(ret_error, -EBADMSG, _("%s: JSON is not an object"), path);
        *ret = TAKE_PTR(o);
        return 0;
}

/* The members of a Go struct we read and write. Writing follows the table's
 * order, which is the struct's field order, honouring omitempty. */
typedef enum FieldType { FIELD_STRING, FIELD_STRV, FIELD_BOOL, FIELD_RAW } FieldType;
typedef struct Field {
        const char *key;
        FieldType type;
        size_t offset;
        bool omitempty;
} Field;
#define FIELD_PTR(base, f, T) ((T *) ((char *) (base) + (f)->offset))

static int json_get_fields(json_object *o, const Field *fields, size_t n, void *base,
                           const char *path, char **ret_error) {
        for (const Field *f = fields; f < fields + n; f++) {
                json_object *v = json_object_object_get(o, f->key); /* NULL if null */
                static const json_type want[] = { [FIELD_STRING] = json_type_string,
                                                  [FIELD_STRV] = json_type_array,
                                                  [FIELD_BOOL] = json_type_boolean };
                int r;

                if (!v)
                        continue;
                if (f->type != FIELD_RAW && !json_object_is_type(v, want[f->type]))
                        return fail(ret_error, -EBADMSG, _("%s: \"%s\" is not of type %s"),
                                    path, f->key, json_type_to_name(want[f->type]));
                switch (f->type) {
                case FIELD_STRING:
                        if (!(*FIELD_PTR(base, f, char *) = strdup(json_object_get_string(v))))
                                return -ENOMEM;
                        break;
                case FIELD_STRV:
                        for (size_t i = 0; i < json_object_array_length(v); i++) {
                                json_object *e = json_object_array_get_idx(v, i);
                                if (!json_object_is_type(e, json_type_string))
                                        return fail(ret_error, -EBADMSG,
                                                    _("%s: \"%s\" holds a non-string"), path,
                                                    f->key);
                                r = strv_extend(FIELD_PTR(base, f, char **),
                                                json_object_get_string(e));
                                if (r < 0)
                                        return r;
                        }
                        break;
                case FIELD_BOOL:
                        *FIELD_PTR(base, f, bool) = json_object_get_boolean(v);
                        break;
                case FIELD_RAW:
                        r = json_format_go(v, false, FIELD_PTR(base, f, char *));
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

static int json_add(json_object *o, const char *key, json_object *v) {
        if (!v)
                return -ENOMEM;
        if (json_object_object_add(o, key, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

static int json_add_fields(json_object *o, const Field *fields, size_t n, const void *base) {
        for (const Field *f = fields; f < fields + n; f++) {
                const char *s = f->type == FIELD_STRING || f->type == FIELD_RAW ?
                                        *FIELD_PTR(base, f, const char *) : NULL;
                char **l = f->type == FIELD_STRV ? *FIELD_PTR(base, f, char **) : NULL;
                json_object *v = NULL;
                int r;

                switch (f->type) {
                case FIELD_STRING:
                        if (f->omitempty && (!s || !*s))
                                continue;
                        v = json_object_new_string(strempty(s));
                        break;
                case FIELD_STRV:
                        if (strv_length(l) == 0) /* all our arrays are omitempty */
                                continue;
                        if (!(v = json_object_new_array()))
                                return -ENOMEM;
                        STRV_FOREACH(i, l)
                                if (json_object_array_add(v, json_object_new_string(*i)) < 0) {
                                        json_object_put(v);
                                        return -ENOMEM;
                                }
                        break;
                case FIELD_BOOL:
                        if (f->omitempty && !*FIELD_PTR(base, f, bool))
                                continue;
                        v = json_object_new_boolean(*FIELD_PTR(base, f, bool));
                        break;
                case FIELD_RAW: /* json.RawMessage, omitempty */
                        if (!s)
                                continue;
                        if (!(v = json_tokener_parse(s)))
                                return -EINVAL;
                }
                r = json_add(o, f->key, v);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* ---- keys and certificates ------------------------------------------------------------ */

static size_t count_substr(const char *s, size_t n, const char *needle) {
        size_t c = 0, l = strlen(needle);

        for (const char *p = s; (p = memmem(p, n - (size_t) (p - s), needle, l)); p += l)
                c++;
        return c;
}

/* A PEM file cut inside a block must not pass as a shorter one. */
static bool pem_complete(const char *s, size_t n) {
        return count_substr(s, n, "-----BEGIN ") == count_substr(s, n, "-----END ");
}

static int import_key(const char *pem, size_t len, gnutls_x509_privkey_t *ret) {
        gnutls_datum_t d = { .data = (unsigned char *) pem, .size = (unsigned) len };

        if (!pem_complete(pem, len))
                return -EBADMSG;
        if (gnutls_x509_privkey_init(ret) < 0)
                return -ENOMEM;
        if (gnutls_x509_privkey_import2(*ret, &d, GNUTLS_X509_FMT_PEM, NULL, 0) < 0) {
                gnutls_x509_privkey_deinit(*ret);
                *ret = NULL;
                return -EBADMSG;
        }
        return 0;
}

/* The chain parses completely and the key belongs to its leaf. */
/* The chain parses, its leaf names domain (a certificate copied in from
 * another name's directory would fail every client's hostname check), and the
 * key is the leaf's. */
static int check_cert_and_key(const char *crt, size_t crt_len, const char *crt_path,
                              const char *key, size_t key_len, const char *key_path,
                              const char *domain, char **ret_error) {
        gnutls_datum_t d = { .data = (unsigned char *) crt, .size = (unsigned) crt_len };
        gnutls_x509_crt_t *crts = NULL;
        gnutls_x509_privkey_t k = NULL;
        unsigned char id1[64], id2[64];
        size_t l1 = sizeof id1, l2 = sizeof id2;
        unsigned n = 0;
        int r = 0;

        if (!pem_complete(crt, crt_len))
                return fail(ret_error, -EBADMSG, _("%s: truncated PEM"), crt_path);
        r = gnutls_x509_crt_list_import2(&crts, &n, &d, GNUTLS_X509_FMT_PEM, 0);
        if (r < 0 || n == 0)
                return fail(ret_error, -EBADMSG, _("%s: no usable certificate: %s"), crt_path,
                            r < 0 ? gnutls_strerror(r) : "empty");
        if (!gnutls_x509_crt_check_hostname2(crts[0], domain, 0))
                r = fail(ret_error, -EBADMSG, _("%s: the certificate is not for %s"), crt_path,
                         domain);
        else if (import_key(key, key_len, &k) < 0)
                r = fail(ret_error, -EBADMSG, _("%s: unusable private key"), key_path);
        else if (gnutls_x509_crt_get_key_id(crts[0], GNUTLS_KEYID_USE_SHA256, id1, &l1) < 0 ||
                 gnutls_x509_privkey_get_key_id(k, GNUTLS_KEYID_USE_SHA256, id2, &l2) < 0 ||
                 l1 != l2 || memcmp(id1, id2, l1) != 0)
                r = fail(ret_error, -EBADMSG,
                         _("%s: the private key does not belong to the certificate in %s"),
                         key_path, crt_path);
        gnutls_x509_privkey_deinit(k);
        for (unsigned i = 0; i < n; i++)
                gnutls_x509_crt_deinit(crts[i]);
        gnutls_free(crts);
        return r < 0 ? r : 0;
}

void stored_cert_done(StoredCert *c) {
        if (!c)
                return;
        free(c->cert_pem);
        erase_and_free(c->key_pem, c->key_len);
        strv_free(c->sans);
        free(c->issuer_url);
        free(c->ca);
        free(c->account);
        free(c->renewal_info);
        *c = (StoredCert) {};
}

/* certmagic's CertificateResource {sans, issuer_data} with acmez's acme.Certificate
 * {url, ca, account, renewal_info} as issuer_data; "url" is not omitempty. */
static const Field cert_fields[] = {
        { "sans", FIELD_STRV, offsetof(StoredCert, sans), true },
};
static const Field issuer_data_fields[] = {
        { "url", FIELD_STRING, offsetof(StoredCert, issuer_url), false },
        { "ca", FIELD_STRING, offsetof(StoredCert, ca), true },
        { "account", FIELD_STRING, offsetof(StoredCert, account), true },
        { "renewal_info", FIELD_RAW, offsetof(StoredCert, renewal_info), true },
};

static int cert_paths(const char *root, const char *issuer_key, const char *domain,
                      char *paths[static _STORAGE_CERT_FILE_MAX]) {
        for (int f = 0; f < _STORAGE_CERT_FILE_MAX; f++) {
                int r = storage_cert_path(root, issuer_key, domain, f, &paths[f]);
                if (r < 0)
                        return r;
        }
        return 0;
}

static void paths_free(char *paths[static _STORAGE_CERT_FILE_MAX]) {
        for (int f = 0; f < _STORAGE_CERT_FILE_MAX; f++)
                free(paths[f]);
}

static int load_cert(char *paths[static _STORAGE_CERT_FILE_MAX], const char *domain,
                     StoredCert *c, char **ret_error) {
        _cleanup_json_ json_object *o = NULL;
        _cleanup_free_ char *meta = NULL;
        json_object *d;
        size_t meta_len;
        int r;

        /* All three from the same directory, so that a concurrent save (which swaps
         * the directory, see storage_save_cert()) cannot hand us a mix. */
        _cleanup_free_ char *dir = strndup(paths[STORAGE_CERT_CRT],
                                           strrchr(paths[STORAGE_CERT_CRT], '/') -
                                                   paths[STORAGE_CERT_CRT]);
        _cleanup_close_ int dfd = -EBADF;

        if (!dir)
                return -ENOMEM;
        dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0 && errno != ENOENT && errno != ENOTDIR) {
                r = -errno;
                return fail(ret_error, r, _("%s: cannot open: %s"), dir, strerror(-r));
        }
        if (dfd < 0)
                return fail(ret_error, -ENOENT, _("%s: not found"), paths[STORAGE_CERT_CRT]);
        r = read_file_at(dfd, paths[STORAGE_CERT_CRT], false, &c->cert_pem, &c->cert_len,
                         ret_error);
        if (r < 0)
                return r;
        /* With the certificate present, a missing key or JSON is damage, not absence. */
        for (StorageCertFile f = STORAGE_CERT_KEY; f <= STORAGE_CERT_META; f++) {
                r = f == STORAGE_CERT_KEY ?
                            read_file_at(dfd, paths[f], true, &c->key_pem, &c->key_len, ret_error) :
                            read_file_at(dfd, paths[f], false, &meta, &meta_len, ret_error);
                if (r == -ENOENT)
                        return fail(ret_error, -EBADMSG, _("%s: missing, but %s exists"),
                                    paths[f], paths[STORAGE_CERT_CRT]);
                if (r < 0)
                        return r;
        }
        r = check_cert_and_key(c->cert_pem, c->cert_len, paths[STORAGE_CERT_CRT], c->key_pem,
                               c->key_len, paths[STORAGE_CERT_KEY], domain, ret_error);
        if (r >= 0)
                r = json_parse_file(paths[STORAGE_CERT_META], meta, meta_len, &o, ret_error);
        if (r >= 0)
                r = json_get_fields(o, cert_fields, ELEMENTSOF(cert_fields), c,
                                    paths[STORAGE_CERT_META], ret_error);
        if (r < 0)
                return r;
        d = json_object_object_get(o, "issuer_data");
        if (d && !json_object_is_type(d, json_type_object))
                return fail(ret_error, -EBADMSG, _("%s: \"issuer_data\" is not an object"),
                            paths[STORAGE_CERT_META]);
        return d ? json_get_fields(d, issuer_data_fields, ELEMENTSOF(issuer_data_fields), c,
                                   paths[STORAGE_CERT_META], ret_error) : 0;
}

int storage_load_cert(const char *root, const char *issuer_key, const char *domain,
                      StoredCert *ret, char **ret_error) {
        char *paths[_STORAGE_CERT_FILE_MAX] = {};
        _cleanup_(stored_cert_done) StoredCert c = {};
        int r;

        r = cert_paths(root, issuer_key, domain, paths);
        if (r < 0)
                r = fail(ret_error, r, _("%s: no valid storage path for this name"), domain);
        else
                r = load_cert(paths, domain, &c, ret_error);
        paths_free(paths);
        if (r < 0)
                return r;
        *ret = c;
        c = (StoredCert) {};
        return 0;
}

static int format_cert_meta(const StoredCert *c, char **ret) {
        _cleanup_json_ json_object *o = json_object_new_object();
        json_object *d = NULL;
        int r;

        if (!o)
                return -ENOMEM;
        r = json_add_fields(o, cert_fields, ELEMENTSOF(cert_fields), c);
        if (r >= 0)
                r = json_add(o, "issuer_data", d = json_object_new_object()); /* o owns d */
        if (r >= 0)
                r = json_add_fields(d, issuer_data_fields, ELEMENTSOF(issuer_data_fields), c);
        if (r < 0)
                return r;
        return json_format_go(o, true, ret);
}

/* Writes the three files into a new directory: fsynced, 0600. On failure
 * *ret_failed is the file that could not be written (an index into data). */
static int write_set_into(int dfd, const char *const names[], const char *const data[],
                          const size_t lens[], size_t n, size_t *ret_failed) {
        for (size_t i = 0; i < n; i++) {
                const char *p = data[i];
                size_t left = lens[i];
                int fd, r = 0;

                *ret_failed = i;
                fd = openat(dfd, names[i], O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
                            0600);
                if (fd < 0)
                        return -errno;
                if (fchmod(fd, 0600) < 0)
                        r = -errno;
                while (r >= 0 && left > 0) {
                        ssize_t k = write(fd, p, left);
                        if (k < 0 && errno != EINTR)
                                r = -errno;
                        else if (k > 0)
                                p += k, left -= (size_t) k;
                }
                if (r >= 0 && fsync(fd) < 0)
                        r = -errno;
                if (close(fd) < 0 && r >= 0)
                        r = -errno;
                if (r < 0)
                        return r;
        }
        *ret_failed = n;
        return fsync(dfd) < 0 ? -errno : 0;
}

/* Empties and removes a directory of plain files (ours: a certificate set). */
static void remove_set_dir(const char *path) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        struct dirent *de;
        DIR *d;

        if (fd >= 0 && (d = fdopendir(fd))) {
                fd = -EBADF;
                while ((de = readdir(d)))
                        if (!streq(de->d_name, ".") && !streq(de->d_name, ".."))
                                (void) unlinkat(dirfd(d), de->d_name, 0);
                closedir(d);
        }
        (void) rmdir(path);
}

/* 1 when dir holds nothing but regular files (or does not exist), so that
 * it can be replaced by a directory with the same files; other files in it
 * are carried over by hard links. 0 when it holds anything else. */
static int set_dir_replaceable(const char *dir, bool *ret_exists) {
        _cleanup_close_ int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        struct dirent *de;
        bool ok = true;
        DIR *d;

        *ret_exists = fd >= 0;
        if (fd < 0)
                return errno == ENOENT ? 1 : errno == ENOTDIR || errno == ELOOP ? 0 : -errno;
        d = fdopendir(fd);
        if (!d)
                return -errno;
        fd = -EBADF;
        while (ok && (de = readdir(d))) {
                struct stat st;

                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                ok = fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) >= 0 &&
                     S_ISREG(st.st_mode);
        }
        closedir(d);
        return ok;
}

/* Hard-links every file of old that is not one of names into new. */
static int carry_over(const char *old, int new_fd, const char *const names[], size_t n) {
        _cleanup_close_ int fd = open(old, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        struct dirent *de;
        int r = 0;
        DIR *d;

        if (fd < 0)
                return errno == ENOENT ? 0 : -errno;
        d = fdopendir(fd);
        if (!d)
                return -errno;
        fd = -EBADF;
        while (r >= 0 && (de = readdir(d))) {
                bool ours = streq(de->d_name, ".") || streq(de->d_name, "..") ||
                            startswith(de->d_name, ".tmp-");

                for (size_t i = 0; !ours && i < n; i++)
                        ours = streq(de->d_name, names[i]);
                if (!ours && linkat(dirfd(d), de->d_name, new_fd, de->d_name, 0) < 0)
                        r = -errno;
        }
        closedir(d);
        return r;
}

/* The files of one certificate are replaced together: the new set is
 * written into a fresh directory next to <name>/, which then trades places
 * with <name>/ in one renameat2(RENAME_EXCHANGE). A crash, a kill or a full
 * disk at any moment leaves <name>/ holding the complete old set or the
 * complete new one; the old set, now in the temporary directory, is removed
 * afterwards (or, after a crash, by a later save). 0, 1 when the file system
 * cannot exchange (or <name>/ holds more than files): write file by file. */
static int save_set_exchange(const char *dir, const char *const names[],
                             const char *const data[], const size_t lens[], size_t n,
                             size_t *ret_failed) {
        _cleanup_free_ char *parent = NULL, *prefix = NULL, *tmp = NULL;
        _cleanup_close_ int tfd = -EBADF;
        bool exists;
        int r;

        *ret_failed = n;
        r = temp_prefix(dir, &parent, &prefix);
        if (r < 0)
                return r;
        remove_stale_temps(parent, prefix);
        r = set_dir_replaceable(dir, &exists);
        if (r <= 0)
                return r < 0 ? r : 1;
        if (asprintf(&tmp, "%s/%s-XXXXXX", parent, prefix) < 0)
                return -ENOMEM;
        if (!mkdtemp(tmp)) /* 0700 */
                return -errno;
        tfd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        r = tfd < 0 ? -errno : 0;
        if (r >= 0 && exists)
                r = carry_over(dir, tfd, names, n);
        if (r >= 0)
                r = write_set_into(tfd, names, data, lens, n, ret_failed);
        /* No <name>/ yet: it appears complete, else it trades places. */
        if (r >= 0 && (exists || renameat2(AT_FDCWD, tmp, AT_FDCWD, dir, RENAME_NOREPLACE) < 0)) {
                exists = true;
                if (renameat2(AT_FDCWD, tmp, AT_FDCWD, dir, RENAME_EXCHANGE) < 0)
                        r = errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP ? 1 : -errno;
        }
        if (r != 0) {
                remove_set_dir(tmp);
                return r;
        }
        (void) fsync_directory_of(dir);
        if (exists)
                remove_set_dir(tmp); /* the old set */
        return 0;
}

int storage_save_cert(const char *root, const char *issuer_key, const char *domain,
                      const StoredCert *c, char **ret_error) {
        static const StorageCertFile order[] = { STORAGE_CERT_KEY, STORAGE_CERT_CRT,
                                                 STORAGE_CERT_META };
        char *paths[_STORAGE_CERT_FILE_MAX] = {};
        _cleanup_free_ char *meta = NULL, *dir = NULL;
        const char *names[ELEMENTSOF(order)], *data[ELEMENTSOF(order)];
        size_t lens[ELEMENTSOF(order)], failed = 0;
        int r;

        r = cert_paths(root, issuer_key, domain, paths);
        if (r < 0)
                r = fail(ret_error, r, _("%s: no valid storage path for this name"), domain);
        else if (!c->cert_pem || !c->key_pem)
                r = fail(ret_error, -EINVAL, _("%s: certificate or key missing"), domain);
        else if (check_cert_and_key(c->cert_pem, c->cert_len, "new certificate", c->key_pem,
                                    c->key_len, "new key", domain, ret_error) < 0)
                r = -EINVAL;
        else if ((r = format_cert_meta(c, &meta)) < 0)
                r = fail(ret_error, r, _("%s: cannot encode metadata"), paths[STORAGE_CERT_META]);
        for (size_t i = 0; r >= 0 && i < ELEMENTSOF(order); i++) {
                StorageCertFile f = order[i];

                names[i] = strrchr(paths[f], '/') + 1;
                data[i] = f == STORAGE_CERT_KEY ? c->key_pem : f == STORAGE_CERT_CRT ? c->cert_pem : meta;
                lens[i] = f == STORAGE_CERT_KEY ? c->key_len :
                          f == STORAGE_CERT_CRT ? c->cert_len : strlen(meta);
        }
        if (r >= 0) {
                dir = strndup(paths[STORAGE_CERT_CRT],
                              strrchr(paths[STORAGE_CERT_CRT], '/') - paths[STORAGE_CERT_CRT]);
                r = dir ? mkdir_parents(dir) : -ENOMEM;
                if (r < 0)
                        r = fail(ret_error, r, _("%s: cannot write: %s"), dir ? dir : domain,
                                 strerror(-r));
        }
        if (r >= 0) {
                r = save_set_exchange(dir, names, data, lens, ELEMENTSOF(order), &failed);
                if (r < 0)
                        r = fail(ret_error, r, _("%s: cannot write: %s"),
                                 failed < ELEMENTSOF(order) ? paths[order[failed]] : dir,
                                 strerror(-r));
        }
        /* Fallback, file by file, key first: a crash in between leaves a new key
         * next to the old chain, which loads as -EBADMSG (re-issue). */
        for (size_t i = 0; r > 0 && i < ELEMENTSOF(order); i++) {
                int q = storage_write_file(paths[order[i]], data[i], lens[i]);
                if (q < 0)
                        r = fail(ret_error, q, _("%s: cannot write: %s"), paths[order[i]],
                                 strerror(-q));
                else if (i + 1 == ELEMENTSOF(order))
                        r = 0;
        }
        paths_free(paths);
        return r;
}

/* ---- accounts ------------------------------------------------------------------------- */

/* acmez's acme.Account, in field order. */
static const Field account_fields[] = {
        { "status", FIELD_STRING, offsetof(StoredAccount, status), false },
        { "contact", FIELD_STRV, offsetof(StoredAccount, contact), true },
        { "termsOfServiceAgreed", FIELD_BOOL, offsetof(StoredAccount, terms_of_service_agreed),
          true },
        { "externalAccountBinding", FIELD_RAW, offsetof(StoredAccount, external_account_binding),
          true },
        { "orders", FIELD_STRING, offsetof(StoredAccount, orders), false },
        { "location", FIELD_STRING, offsetof(StoredAccount, location), true },
};

void stored_account_done(StoredAccount *a) {
        if (!a)
                return;
        free(a->status);
        strv_free(a->contact);
        free(a->external_account_binding);
        free(a->orders);
        free(a->location);
        erase_and_free(a->key_pem, a->key_len);
        *a = (StoredAccount) {};
}

int storage_account_email(const StoredAccount *a, char **ret) {
        const char *s = a->contact && a->contact[0] ? a->contact[0] : "", *colon = strchr(s, ':');

        /* certmagic's getPrimaryContact(): what follows the first ':'. */
        *ret = strdup(colon ? colon + 1 : s);
        return *ret ? 0 : -ENOMEM;
}

int storage_load_account(const char *root, const char *issuer_key, const char *email,
                         StoredAccount *ret, char **ret_error) {
        _cleanup_free_ char *reg_path = NULL, *key_path = NULL, *reg = NULL;
        _cleanup_(stored_account_done) StoredAccount a = {};
        _cleanup_json_ json_object *o = NULL;
        gnutls_x509_privkey_t k;
        size_t reg_len;
        int r;

        r = storage_account_path(root, issuer_key, email, STORAGE_ACCOUNT_REG, &reg_path);
        if (r >= 0)
                r = storage_account_path(root, issuer_key, email, STORAGE_ACCOUNT_KEY, &key_path);
        if (r < 0)
                return fail(ret_error, r, _("%s: no valid storage path for this email"),
                            strempty(email));
        r = read_file(reg_path, false, &reg, &reg_len, ret_error);
        if (r < 0)
                return r;
        r = read_file(key_path, true, &a.key_pem, &a.key_len, ret_error);
        if (r == -ENOENT)
                return fail(ret_error, -ENOKEY,
                            _("%s: account key missing, but %s exists; restore the key, or "
                              "remove the account to register a new one"),
                            key_path, reg_path);
        if (r < 0)
                return r;
        if (import_key(a.key_pem, a.key_len, &k) < 0)
                return fail(ret_error, -EBADMSG, _("%s: unusable private key"), key_path);
        gnutls_x509_privkey_deinit(k);
        r = json_parse_file(reg_path, reg, reg_len, &o, ret_error);
        if (r >= 0)
                r = json_get_fields(o, account_fields, ELEMENTSOF(account_fields), &a, reg_path,
                                    ret_error);
        if (r < 0)
                return r;
        *ret = a;
        a = (StoredAccount) {};
        return 0;
}

int storage_save_account(const char *root, const char *issuer_key, const StoredAccount *a,
                         char **ret_error) {
        _cleanup_free_ char *email = NULL, *reg_path = NULL, *key_path = NULL, *reg = NULL;
        _cleanup_json_ json_object *o = json_object_new_object();
        int r;

        if (!o)
                return -ENOMEM;
        if (!a->key_pem || a->key_len == 0)
                return fail(ret_error, -EINVAL, _("account key missing"));
        r = storage_account_email(a, &email);
        if (r < 0)
                return r;
        r = storage_account_path(root, issuer_key, email, STORAGE_ACCOUNT_REG, &reg_path);
        if (r >= 0)
                r = storage_account_path(root, issuer_key, email, STORAGE_ACCOUNT_KEY, &key_path);
        if (r < 0)
                return fail(ret_error, r, _("%s: no valid storage path for this email"), email);
        r = json_add_fields(o, account_fields, ELEMENTSOF(account_fields), a);
        if (r >= 0)
                r = json_format_go(o, true, &reg);
        if (r < 0)
                return fail(ret_error, r, _("%s: cannot encode account"), reg_path);

        r = storage_write_file(key_path, a->key_pem, a->key_len);
        if (r < 0)
                return fail(ret_error, r, _("%s: cannot write: %s"), key_path, strerror(-r));
        r = storage_write_file(reg_path, reg, strlen(reg));
        if (r < 0)
                return fail(ret_error, r, _("%s: cannot write: %s"), reg_path, strerror(-r));
        return 0;
}

/* ---- locks ---------------------------------------------------------------------------- */

struct StorageLock {
        char *path;
        int64_t created; /* usec since the epoch: tells our lock file from a successor */
};

/* certmagic's lockMeta. */
typedef struct LockMeta {
        char *created, *updated;
} LockMeta;
static const Field lock_fields[] = {
        { "created", FIELD_STRING, offsetof(LockMeta, created), false },
        { "updated", FIELD_STRING, offsetof(LockMeta, updated), false },
};

/* Go's time.Time{} (0001-01-01T00:00:00Z), which omitempty does not omit. */
#define GO_ZERO_TIME_USEC (INT64_C(-62135596800) * (int64_t) USEC_PER_SEC)

/* RFC 3339 as Go writes time.Time in JSON: 2006-01-02T15:04:05.999999999Z07:00. */
static int parse_rfc3339(const char *s, int64_t *ret) {
        struct tm tm = {};
        int64_t frac = 0, scale = 100000, off = 0;
        unsigned oh, om;
        int n = 0;

        if (sscanf(s, "%4d-%2d-%2d%*1[Tt]%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                   &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &n) != 6 || n != 19)
                return -EINVAL;
        s += n;
        if (*s == '.' && !(s[1] >= '0' && s[1] <= '9'))
                return -EINVAL;
        if (*s == '.')
                for (s++; *s >= '0' && *s <= '9'; s++, scale /= 10)
                        frac += (*s - '0') * scale;
        if (*s == 'Z' || *s == 'z')
                s++;
        else if ((*s == '+' || *s == '-') && sscanf(s + 1, "%2u:%2u%n", &oh, &om, &n) == 2 &&
                 n == 5) {
                off = ((int64_t) oh * 3600 + om * 60) * (*s == '-' ? -1 : 1);
                s += 6;
        } else
                return -EINVAL;
        if (*s)
                return -EINVAL;
        tm.tm_year -= 1900;
        tm.tm_mon -= 1;
        *ret = ((int64_t) timegm(&tm) - off) * (int64_t) USEC_PER_SEC + frac;
        return 0;
}

/* {"created":...,"updated":...} as Go's json.NewEncoder(f).Encode(lockMeta) writes it:
 * compact, newline-terminated, times in RFC3339Nano (fraction without trailing
 * zeros). We write UTC. */
static int format_lock(int64_t created, int64_t updated, char **ret) {
        _cleanup_json_ json_object *o = json_object_new_object();
        _cleanup_free_ char *s = NULL;
        int64_t t[2] = { created, updated };
        int r = o ? 0 : -ENOMEM;

        for (int i = 0; r >= 0 && i < 2; i++) {
                time_t sec = (time_t) (t[i] / (int64_t) USEC_PER_SEC);
                unsigned frac = (unsigned) (t[i] % (int64_t) USEC_PER_SEC);
                struct tm tm;
                char buf[48];
                size_t n = strftime(buf, 40, "%Y-%m-%dT%H:%M:%S", gmtime_r(&sec, &tm));

                if (frac > 0)
                        for (n += (size_t) sprintf(buf + n, ".%06u", frac); buf[n - 1] == '0';)
                                n--;
                strcpy(buf + n, "Z");
                r = json_add(o, i == 0 ? "created" : "updated", json_object_new_string(buf));
        }
        if (r >= 0)
                r = json_format_go(o, false, &s);
        if (r < 0)
                return r;
        return asprintf(ret, "%s\n", s) < 0 ? -ENOMEM : 0;
}

/* A lock file's "created" and "updated". -ENOENT when it is gone, -EBADMSG when it
 * cannot be parsed; *ret_mtime is set in both success and -EBADMSG. */
static int read_lock(const char *path, int64_t *ret_created, int64_t *ret_updated,
                     int64_t *ret_mtime) {
        _cleanup_json_ json_object *o = NULL;
        _cleanup_free_ char *data = NULL;
        LockMeta m = {};
        struct stat st;
        size_t len;
        int r;

        r = read_file(path, false, &data, &len, NULL);
        if (r < 0 && r != -EBADMSG)
                return r;
        if (stat(path, &st) < 0)
                return -errno;
        *ret_mtime = (int64_t) st.st_mtim.tv_sec * (int64_t) USEC_PER_SEC +
                     st.st_mtim.tv_nsec / 1000;
        if (r >= 0)
                r = json_parse_file(path, data, len, &o, NULL);
        if (r >= 0)
                r = json_get_fields(o, lock_fields, ELEMENTSOF(lock_fields), &m, path, NULL);
        *ret_created = *ret_updated = GO_ZERO_TIME_USEC;
        if (r >= 0 && ((m.created && parse_rfc3339(m.created, ret_created) < 0) ||
                       (m.updated && parse_rfc3339(m.updated, ret_updated) < 0)))
                r = -EBADMSG;
        free(m.created);
        free(m.updated);
        return r < 0 ? -EBADMSG : 0;
}

/* 1 stale, 0 fresh, -ENOENT gone. */
static int lock_is_stale(const char *path, usec_t now) {
        int64_t created, updated, mtime, ref;
        int r;

        r = read_lock(path, &created, &updated, &mtime);
        if (r < 0 && r != -EBADMSG)
                return r;
        /* Unparsable: empty or half-written (certmagic writes into the file it created
         * and truncates it to refresh), so go by the file's age. */
        ref = r < 0 ? mtime : updated != GO_ZERO_TIME_USEC ? updated : created;
        return (int64_t) now - ref > (int64_t) STORAGE_LOCK_STALE_USEC;
}

int storage_lock_try(const char *root, const char *name, usec_t now, StorageLock **ret) {
        _cleanup_(storage_lock_freep) StorageLock *l = calloc(1, sizeof(StorageLock));
        _cleanup_free_ char *content = NULL, *tmp = NULL;
        int r;

        if (!l)
                return -ENOMEM;
        l->created = (int64_t) now;
        r = storage_lock_path(root, name, &l->path);
        if (r >= 0)
                r = format_lock(l->created, l->created, &content);
        if (r >= 0)
                r = mkdir_parents(l->path);
        /* The lock appears complete or not at all: an O_EXCL temporary file, written,
         * then link()ed to the lock's name, which fails if that exists. As exclusive as
         * certmagic's O_CREAT|O_EXCL, without its window of an empty lock file. */
        if (r >= 0)
                r = write_temp(l->path, content, strlen(content), &tmp);
        if (r < 0)
                return r;
        for (unsigned attempt = 0; attempt < 3; attempt++) {
                if (link(tmp, l->path) >= 0) {
                        (void) unlink(tmp);
                        (void) fsync_directory_of(l->path);
                        *ret = TAKE_PTR(l);
                        return 0;
                }
                r = errno == EEXIST ? lock_is_stale(l->path, now) : -errno;
                if (r == -ENOENT) /* released meanwhile: try again */
                        continue;
                if (r <= 0)
                        break;
                /* Stale: remove it and try again, as certmagic does. Two processes that
                 * remove the same stale lock at once can both end up holding it;
                 * certmagic accepts that rather than risk deadlocks, and so do we. */
                if (unlink(l->path) < 0 && errno != ENOENT) {
                        r = -errno;
                        break;
                }
        }
        (void) unlink(tmp);
        return r >= 0 || r == -ENOENT ? -EBUSY : r;
}

/* 0 when the lock file is still the one we created. */
static int lock_check_ours(const StorageLock *l) {
        int64_t created, updated, mtime;
        int r;

        r = read_lock(l->path, &created, &updated, &mtime);
        if (r == -ENOENT || r == -EBADMSG)
                return -ENOLCK;
        if (r < 0)
                return r;
        return created == l->created ? 0 : -ENOLCK;
}

int storage_lock_refresh(StorageLock *l, usec_t now) {
        _cleanup_free_ char *content = NULL;
        int r;

        r = lock_check_ours(l);
        if (r >= 0)
                r = format_lock(l->created, (int64_t) now, &content);
        /* Replaced by rename, so no reader sees it empty (certmagic truncates and
         * rewrites in place). */
        if (r >= 0)
                r = storage_write_file(l->path, content, strlen(content));
        return r;
}

int storage_unlock(StorageLock *l) {
        int r;

        r = lock_check_ours(l);
        if (r < 0)
                return r;
        if (unlink(l->path) < 0)
                return errno == ENOENT ? -ENOLCK : -errno;
        return 0;
}

StorageLock *storage_lock_free(StorageLock *l) {
        if (l) {
                free(l->path);
                free(l);
        }
        return NULL;
}

const char *storage_lock_get_path(const StorageLock *l) {
        return l->path;
}
