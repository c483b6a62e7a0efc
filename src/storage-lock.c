/* SPDX-License-Identifier: MIT */
/* certmagic's lock files: created atomically, refreshed, stale after a
 * while. */

#include <stdio.h>
#include <sys/stat.h>

#include "storage-internal.h"

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
                r = storage_json_add(o, i == 0 ? "created" : "updated", json_object_new_string(buf));
        }
        if (r >= 0)
                r = storage_json_format(o, false, &s);
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

        r = storage_read_file(path, false, &data, &len, NULL);
        if (r < 0 && r != -EBADMSG)
                return r;
        if (stat(path, &st) < 0)
                return -errno;
        *ret_mtime = (int64_t) st.st_mtim.tv_sec * (int64_t) USEC_PER_SEC +
                     st.st_mtim.tv_nsec / 1000;
        if (r >= 0)
                r = storage_json_parse(path, data, len, &o, NULL);
        if (r >= 0)
                r = storage_json_get_fields(o, lock_fields, ELEMENTSOF(lock_fields), &m, path, NULL);
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
                r = storage_mkdir_parents(l->path);
        /* The lock appears complete or not at all: an O_EXCL temporary file, written,
         * then link()ed to the lock's name, which fails if that exists. As exclusive as
         * certmagic's O_CREAT|O_EXCL, without its window of an empty lock file. */
        if (r >= 0)
                r = storage_write_temp(l->path, content, strlen(content), &tmp);
        if (r < 0)
                return r;
        for (unsigned attempt = 0; attempt < 3; attempt++) {
                if (link(tmp, l->path) >= 0) {
                        (void) unlink(tmp);
                        (void) storage_fsync_directory_of(l->path);
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
