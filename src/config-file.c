/* SPDX-License-Identifier: MIT */
/* The --config file, systemd credentials and --storepass-file, the check
 * that the files the settings name can be read, messages that say where a
 * setting came from, and config_load(), which does all of it in order. */

#include <assert.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>

#include "config-option.h"
#include "util.h"

/* The config file. The syntax is deliberately small: "name = value" per
 * line with the flag's name, no quoting and no escapes, so that any value a
 * flag takes can be written as it is, '=' and '#' included. */

static bool is_blank(char ch) {
        return ch == ' ' || ch == '\t';
}

/* "PATH:LINE: " before a message about one setting. Messages from
 * option_set() start with "--KEY:"; in a file the key has no dashes. */
static int line_error(char **ret_error, int r, const char *path, unsigned line, const char *key,
                      const char *message) {
        const char *rest = message ? message : strerror(-r), *p;

        p = startswith(rest, "--");
        if (p && (p = startswith(p, key)) && *p == ':')
                rest += 2;
        if ((p = startswith(rest, key)) && *p == ':')
                return error_set(ret_error, r, "%s:%u: %s", path, line, rest);
        return error_set(ret_error, r, "%s:%u: %s: %s", path, line, key, rest);
}

/* Parses one line, NUL-terminated, without its line ending. seen[] counts
 * single-valued options per file. */
static int parse_line(Config *c, const char *path, unsigned line, char *s, bool *seen,
                      char **ret_error) {
        _cleanup_free_ char *message = NULL;
        char *name, *value = NULL, *eq, *e;
        const Option *o;
        bool negated;
        int r;

        s += strspn(s, " \t");
        e = s + strlen(s);
        while (e > s && (is_blank(e[-1]) || e[-1] == '\r'))
                *--e = '\0';
        if (*s == '\0' || *s == '#')
                return 0;

        name = s;
        eq = strchr(s, '=');
        if (eq) {
                value = eq + 1 + strspn(eq + 1, " \t");
                while (eq > s && is_blank(eq[-1]))
                        eq--;
                *eq = '\0';
                if (*name == '\0')
                        return error_set(ret_error, -EINVAL,
                                      _("%s:%u: missing setting name before \"=\""), path, line);
        }

        /* "listen 127.0.0.1:443": a forgotten "=", or garbage. */
        e = name + strcspn(name, " \t");
        if (*e != '\0') {
                *e = '\0';
                if (option_find(name, &negated))
                        return error_set(ret_error, -EINVAL,
                                      _("%s:%u: %s: missing \"=\" between name and value"), path,
                                      line, name);
                return error_set(ret_error, -ENOENT, _("%s:%u: unknown setting \"%s\""), path, line,
                              name);
        }

        o = option_find(name, &negated);
        if (!o && refused_flag_reason(name)) {
                (void) unknown_flag_error(&message, name);
                return line_error(ret_error, -ENOENT, path, line, name, message);
        }
        if (!o) {
                const char *bare = startswith(name, "--");

                if (bare && option_find(bare, &negated))
                        return error_set(ret_error, -ENOENT,
                                      _("%s:%u: unknown setting \"%s\" (write names without the leading dashes)"),
                                      path, line, name);
                return error_set(ret_error, -ENOENT, _("%s:%u: unknown setting \"%s\""), path, line,
                              name);
        }
        if (o->flags & OPTION_CMDLINE_ONLY) {
                (void) error_set(&message, -EINVAL, _("--%s: only valid on the command line"), name);
                return line_error(ret_error, -EINVAL, path, line, name, message);
        }
        if (!(o->flags & OPTION_REPEATABLE)) {
                size_t idx = (size_t) (o - options);

                if (seen[idx]) {
                        (void) error_set(&message, -EINVAL, _("--%s: given more than once"), name);
                        return line_error(ret_error, -EINVAL, path, line, name, message);
                }
                seen[idx] = true;
        }

        r = option_set(c, o, name, negated, value, &message);
        if (r < 0)
                return line_error(ret_error, r, path, line, name, message);
        c->origin_line[option_slot(o)] = line;
        return 0;
}

int config_parse_text(Config *c, const char *path, const char *text, size_t size,
                      char **ret_error) {
        bool seen[CONFIG_OPTIONS_MAX] = {};
        const char *p = text, *end = text + size;
        unsigned line = 0;
        int r;

        assert(c);
        assert(path);
        assert(text || size == 0);

        if (size > CONFIG_FILE_MAX)
                return error_set(ret_error, -EFBIG, _("%s: file too large (more than %u bytes)"), path,
                              (unsigned) CONFIG_FILE_MAX);
        /* A byte order mark some editors write. */
        if (size >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0)
                p += 3;

        while (p < end) {
                const char *nl = memchr(p, '\n', (size_t) (end - p));
                size_t len = nl ? (size_t) (nl - p) : (size_t) (end - p);
                _cleanup_free_ char *copy = NULL;

                line++;
                if (len > 0 && p[len - 1] == '\r')
                        len--;
                if (len > CONFIG_LINE_MAX)
                        return error_set(ret_error, -EINVAL,
                                      _("%s:%u: line too long (more than %u bytes)"), path, line,
                                      (unsigned) CONFIG_LINE_MAX);
                if (memchr(p, '\0', len))
                        return error_set(ret_error, -EINVAL, _("%s:%u: not a text line (NUL byte)"),
                                      path, line);

                copy = strndup(p, len);
                if (!copy)
                        return error_set(ret_error, -ENOMEM, "%s", _("out of memory"));
                r = parse_line(c, path, line, copy, seen, ret_error);
                explicit_bzero(copy, len); /* it may hold the storepass */
                if (r < 0)
                        return r;

                p = nl ? nl + 1 : end;
        }
        return 0;
}

int config_load_file(Config *c, const char *path, char **ret_error) {
        _cleanup_free_ char *text = NULL;
        size_t size;
        int r;

        assert(c);
        assert(path);

        /* util.c's reader: until EOF (so a pipe, --config <(...), works), and
         * the file may hold the storepass. */
        r = read_file_erasable(path, CONFIG_FILE_MAX, &text, &size);
        if (r == -EFBIG)
                return error_set(ret_error, r, _("%s: file too large (more than %u bytes)"), path,
                              (unsigned) CONFIG_FILE_MAX);
        if (r == -ENOMEM)
                return error_set(ret_error, r, "%s", _("out of memory"));
        if (r < 0)
                return error_set(ret_error, r, _("cannot read %s: %s"), path, strerror(-r));
        r = config_parse_text(c, path, text, size, ret_error);
        explicit_bzero(text, size); /* it may hold the storepass */
        return r;
}

/* Credentials, as systemd's LoadCredential= passes them. */

static int resolve_credential(char **field, const char *flag, const char *dir, char **ret_error) {
        _cleanup_free_ char *path = NULL;
        struct stat st;

        if (!*field || strchr(*field, '/'))
                return 0;
        if (asprintf(&path, "%s/%s", dir, *field) < 0)
                return error_set(ret_error, -ENOMEM, "%s", _("out of memory"));
        if (stat(path, &st) < 0) {
                int e = errno;

                if (e == ENOENT || e == ENOTDIR)
                        return 0; /* not a credential: a path relative to the working directory */
                return error_set(ret_error, -e, _("--%s: cannot look up credential %s: %s"), flag,
                              path, strerror(e));
        }
        if (!S_ISREG(st.st_mode))
                return 0; /* ".", "..", a subdirectory: not a credential */
        free(*field);
        *field = TAKE_PTR(path);
        return 1;
}

/* One line: a trailing newline (LF or CRLF) is dropped, anything after it
 * refused; "" is a valid password. The buffer is wiped before it is freed. */
static int read_storepass(Config *c, char **ret_error) {
        char *buf = NULL;
        size_t size, len;
        int r;

        r = read_file_erasable(c->storepass_file, STOREPASS_FILE_MAX, &buf, &size);
        if (r == -EFBIG)
                return error_set(ret_error, r, _("--storepass-file %s: longer than %u bytes"),
                              c->storepass_file, (unsigned) STOREPASS_FILE_MAX);
        if (r == -ENOMEM)
                return error_set(ret_error, r, "%s", _("out of memory"));
        if (r < 0)
                return error_set(ret_error, r, _("--storepass-file %s: cannot read: %s"),
                              c->storepass_file, strerror(-r));

        len = strcspn(buf, "\r\n");
        if (buf[len] == '\r' && buf[len + 1] == '\n')
                r = len + 2 == size ? 0 : -EINVAL;
        else if (buf[len] == '\n')
                r = len + 1 == size ? 0 : -EINVAL;
        else
                r = len == size ? 0 : -EINVAL;
        if (r < 0) {
                explicit_bzero(buf, size);
                free(buf);
                return error_set(ret_error, r,
                              _("--storepass-file %s: must hold the password on one line"),
                              c->storepass_file);
        }

        buf[len] = '\0';
        explicit_bzero(buf + len, size - len);
        if (c->storepass)
                explicit_bzero(c->storepass, strlen(c->storepass));
        free(c->storepass);
        c->storepass = buf;
        free(c->storepass_file);
        c->storepass_file = NULL;
        return 0;
}

int config_resolve_credentials(Config *c, const char *credentials_dir, char **ret_error) {
        const struct {
                char **field;
                const char *flag;
        } files[] = {
                { &c->cert, "cert" },
                { &c->key, "key" },
                { &c->keystore, "keystore" },
                { &c->cacert, "cacert" },
                { &c->storepass_file, "storepass-file" },
        };
        int r;

        assert(c);

        if (credentials_dir && credentials_dir[0] != '\0')
                for (size_t i = 0; i < ELEMENTSOF(files); i++) {
                        r = resolve_credential(files[i].field, files[i].flag, credentials_dir,
                                               ret_error);
                        if (r < 0)
                                return r;
                        if (r > 0)
                                c->from_credential[option_slot(option_named(files[i].flag))] =
                                        true;
                }

        if (c->storepass_file)
                return read_storepass(c, ret_error);
        return 0;
}

/* The files a setting names, checked before anything is loaded. */
static const char *const file_options[] = { "cert", "key", "keystore", "cacert", "pkcs11-module" };

/* "FILE:LINE: key" or "--key": where a setting came from, for a message. */
static char *setting_where(const Config *c, const Option *o) {
        unsigned line = c->origin_line[option_slot(o)];
        char *s;

        if (line > 0 && c->config_file)
                return asprintf(&s, "%s:%u: %s", c->config_file, line, o->name) < 0 ? NULL : s;
        return asprintf(&s, "--%s", o->name) < 0 ? NULL : s;
}

static bool path_under(const char *path, const char *dir) {
        const char *rest = startswith(path, dir);

        return rest && (*rest == '/' || *rest == '\0');
}

/* What to do about a file the service cannot open: the usual causes under
 * the shipped units, said in their terms. "" when there is nothing to add. */
static char *file_error_hint(const Config *c, const Option *o, const char *path, int e,
                             const char *credentials_dir) {
        const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
        bool from_file = c->origin_line[option_slot(o)] > 0 && c->config_file;
        char *s = NULL;
        int r = 0;

        if ((e == EACCES || e == ENOENT) &&
            (path_under(path, "/home") || path_under(path, "/root") || path_under(path, "/run/user")) &&
            getenv("INVOCATION_ID"))
                r = asprintf(&s, _("; the service's sandbox (ProtectHome=yes in the shipped units) "
                                   "hides /home, /root and /run/user: keep the file under "
                                   "/etc/tlsgate, or pass it as a credential "
                                   "(LoadCredential=%s:%s)"),
                             base, path);
        else if ((e == EACCES || e == EPERM) && geteuid() != 0)
                r = asprintf(&s, from_file ?
                             _("; tlsgate runs as uid %u, which may not read it: hand a file "
                               "only root may read over as a systemd credential, "
                               "LoadCredential=%s:%s in the service (systemctl edit), and write "
                               "\"%s = %s\" (see CREDENTIALS in tlsgate.conf(5))") :
                             _("; tlsgate runs as uid %u, which may not read it: hand a file "
                               "only root may read over as a systemd credential, "
                               "LoadCredential=%s:%s in the service (systemctl edit), and give "
                               "--%s=%s (see CREDENTIALS in tlsgate.conf(5))"),
                             (unsigned) geteuid(), base, path, o->name, base);
        else if (e == ENOENT && !strchr(path, '/') && (!credentials_dir || !*credentials_dir))
                r = asprintf(&s, _("; a name without a directory is looked up in "
                                   "$CREDENTIALS_DIRECTORY, which is not set here (a service "
                                   "sets it with LoadCredential=): outside the service, give "
                                   "the file's path"));
        else if (e == ENOENT && !strchr(path, '/'))
                r = asprintf(&s, _("; nor is it a credential in %s: is "
                                   "LoadCredential=%s:PATH missing from the service?"),
                             credentials_dir, path);
        else
                s = strdup("");
        return r < 0 ? NULL : s;
}

int config_check_files(const Config *c, const char *credentials_dir, char **ret_error) {
        assert(c);

        for (size_t i = 0; i < ELEMENTSOF(file_options); i++) {
                const Option *o = option_named(file_options[i]);
                const char *path = *FIELD(c, o, char *);
                _cleanup_free_ char *where = NULL, *hint = NULL;
                struct stat st;
                int fd, e;

                if (!path || !*path)
                        continue;
                /* A module without a directory is found by the dynamic loader. */
                if (streq(o->name, "pkcs11-module") && !strchr(path, '/'))
                        continue;
                fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
                if (fd >= 0) {
                        e = fstat(fd, &st) < 0 ? errno : S_ISDIR(st.st_mode) ? EISDIR : 0;
                        close(fd);
                        if (e == 0)
                                continue;
                } else
                        e = errno;
                where = setting_where(c, o);
                hint = file_error_hint(c, o, path, e, credentials_dir);
                if (!where || !hint)
                        return error_set(ret_error, -ENOMEM, "%s", _("out of memory"));
                return error_set(ret_error, -e, _("%s %s: cannot read: %s%s"), where, path,
                                 strerror(e), hint);
        }
        return 0;
}

char *config_locate(const Config *c, const char *message) {
        _cleanup_free_ char *name = NULL;
        const Option *o;
        const char *p;
        size_t n;
        char *s;

        assert(c);
        assert(message);

        p = startswith(message, "--");
        if (!p)
                return strdup(message);
        n = strcspn(p, " :");
        name = strndup(p, n);
        if (!name)
                return NULL;
        o = option_named(name);
        if (!o || c->origin_line[option_slot(o)] == 0 || !c->config_file)
                return strdup(message);
        if (asprintf(&s, "%s:%u: %s", c->config_file, c->origin_line[option_slot(o)], p) < 0)
                return NULL;
        return s;
}

char *config_credentials_note(const Config *c, const char *message) {
        _cleanup_free_ char *names = NULL;
        bool about_file = false;
        unsigned long n = 0;
        char *s;

        assert(c);
        assert(message);

        for (size_t i = 0; i < ELEMENTSOF(file_options) && !about_file; i++) {
                const char *p = startswith(message, "--");

                p = p ? startswith(p, file_options[i]) : NULL;
                about_file = p && (*p == ' ' || *p == ':');
        }
        if (!about_file)
                return NULL;

        for (size_t i = 0; i < ELEMENTSOF(file_options); i++) {
                const Option *o = option_named(file_options[i]);
                const char *path = *FIELD(c, o, char *), *base;
                char *more;

                if (!c->from_credential[option_slot(o)] || !path)
                        continue;
                base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
                if (asprintf(&more, "%s%s%s", strempty(names), names ? ", " : "", base) < 0)
                        return NULL;
                free(names);
                names = more;
                n++;
        }
        if (!names)
                return NULL;
        if (asprintf(&s, ngettext("; the credential %s is systemd's copy from when the service "
                                  "started (LoadCredential=), which a reload does not renew: "
                                  "restart the service (systemctl restart) to hand over a new "
                                  "file",
                                  "; the credentials %s are systemd's copies from when the "
                                  "service started (LoadCredential=), which a reload does not "
                                  "renew: restart the service (systemctl restart) to hand over "
                                  "new files", n),
                     names) < 0)
                return NULL;
        return s;
}

int config_load(Config *c, int argc, char *argv[], const char *credentials_dir, bool *ret_help,
                char **ret_error) {
        _cleanup_free_ char *error = NULL;
        bool help = false;
        int r;

        assert(c);

        r = config_parse_argv(c, argc, argv, &help, &error);
        if (ret_help)
                *ret_help = r >= 0 && help;
        if (r >= 0 && help)
                return 0;
        if (r >= 0)
                r = config_validate(c, &error);
        if (r < 0) {
                /* Messages about the file name it and the line; a rule
                 * broken across settings (a required one missing, as in an
                 * unedited copy of the example) gets the file named here, so
                 * that the operator knows what to edit. */
                if (c->config_file && error && !strstr(error, c->config_file))
                        return error_set(ret_error, r, "%s: %s", c->config_file, error);
                *ret_error = TAKE_PTR(error);
                return r;
        }
        r = config_resolve_credentials(c, credentials_dir, &error);
        if (r < 0) {
                char *located = error ? config_locate(c, error) : NULL;

                *ret_error = located;
                return located || !error ? r : -ENOMEM;
        }
        return config_check_files(c, credentials_dir, ret_error);
}
