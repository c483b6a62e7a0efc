/* SPDX-License-Identifier: MIT */
/* Files that are whole or absent: fsynced temporary files renamed into
 * place, leftovers of dead writers removed, bounded reads. */

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>

#include "log.h"
#include "storage-internal.h"
#include "util.h"

/* ---- files ---------------------------------------------------------------------------- */

/* mkdir -p for the parents of path; new directories 0700 whatever the umask. */
int storage_mkdir_parents(const char *path) {
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

int storage_fsync_directory_of(const char *path) {
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
int storage_write_temp(const char *path, const void *data, size_t n, char **ret_tmp) {
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
void storage_remove_stale_temps(const char *dir, const char *prefix) {
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
int storage_temp_prefix(const char *path, char **ret_dir, char **ret_prefix) {
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

        if (storage_temp_prefix(path, &dir, &prefix) >= 0)
                storage_remove_stale_temps(*dir ? dir : "/", prefix);
        r = storage_mkdir_parents(path);
        if (r >= 0)
                r = storage_write_temp(path, data, n, &tmp);
        if (r < 0)
                return r;
        if (rename(tmp, path) < 0) {
                r = -errno;
                (void) unlink(tmp);
                return r;
        }
        return storage_fsync_directory_of(path);
}

/* A whole regular file, NUL-terminated. -ENOENT when absent, -EBADMSG when not a
 * regular file or too large, the errno when it cannot be read. Opened relative to
 * dfd (the last component of path when dfd is a directory), named path. */
int storage_read_file_at(int dfd, const char *path, bool secret, char **ret, size_t *ret_len,
                         char **ret_error) {
        _cleanup_close_ int fd = -EBADF;
        struct stat st;
        int r;

        fd = openat(dfd, dfd == AT_FDCWD || !strrchr(path, '/') ? path : strrchr(path, '/') + 1,
                    O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0 && errno == ENOENT)
                return storage_fail(ret_error, -ENOENT, _("%s: not found"), path);
        if (fd < 0 || fstat(fd, &st) < 0) {
                r = -errno;
                return storage_fail(ret_error, r, _("%s: cannot open: %s"), path, strerror(-r));
        }
        if (!S_ISREG(st.st_mode))
                return storage_fail(ret_error, -EBADMSG, _("%s: not a regular file"), path);
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
                return storage_fail(ret_error, -EBADMSG, _("%s: too large"), path);
        if (r < 0)
                return storage_fail(ret_error, r, _("%s: cannot read: %s"), path, strerror(-r));
        return 0;
}

int storage_read_file(const char *path, bool secret, char **ret, size_t *ret_len,
                      char **ret_error) {
        return storage_read_file_at(AT_FDCWD, path, secret, ret, ret_len, ret_error);
}
