/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/uio.h>
/* The CODE_FILE/CODE_LINE/CODE_FUNC of an entry are the caller's, passed
 * in by the log_*() macros: without this, sd_journal_sendv() is a macro
 * that adds log.c's own location as a second set. */
#define SD_JOURNAL_SUPPRESS_LOCATION 1
#include <systemd/sd-journal.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static int log_max_level = LOG_INFO;
static bool log_to_journal = false;

/* systemd sets JOURNAL_STREAM to "dev:ino" of the stream it connected to
 * stderr; only if stderr is still that stream do we talk to journald
 * natively (see systemd.exec(5)). */
static bool stderr_is_journal(void) {
        const char *e = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;

        if (!e || sscanf(e, "%llu:%llu", &dev, &ino) != 2)
                return false;
        if (fstat(STDERR_FILENO, &st) < 0)
                return false;
        return (unsigned long long) st.st_dev == dev && (unsigned long long) st.st_ino == ino;
}

void log_setup(void) {
        const char *e = getenv("TLSGATE_LOG_LEVEL");

        log_to_journal = stderr_is_journal();
        if (e && streq(e, "debug"))
                log_max_level = LOG_DEBUG;
}

bool log_is_journal(void) {
        return log_to_journal;
}

void log_set_max_level(int level) {
        log_max_level = level;
}

int log_get_max_level(void) {
        return log_max_level;
}

void log_force_stderr(void) {
        log_to_journal = false;
}

/* One write() per line, built first: lines from several serving threads
 * (--threads), or processes sharing the stream, never interleave. */
static void log_to_stderr(int level, const char *message) {
        struct timespec ts;
        struct tm tm;
        char stamp[32], line[2200];
        const char *p = line;
        size_t left;
        int n;

        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
        n = snprintf(line, sizeof line, "%s.%06ldZ [%d] %s%s\n", stamp, ts.tv_nsec / 1000,
                     (int) getpid(),
                     level <= LOG_ERR ? "error: " : level == LOG_WARNING ? "warning: " : "",
                     message);
        if (n < 0)
                return;
        left = MIN((size_t) n, sizeof line - 1);
        if ((size_t) n >= sizeof line)
                line[left - 1] = '\n'; /* truncated: still one line */
        while (left > 0) {
                ssize_t k = write(STDERR_FILENO, p, left);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        return;
                p += k;
                left -= (size_t) k;
        }
}

static void log_to_journald(int level, const char *message_id, const LogField *fields,
                            size_t n_fields, const char *file, int line, const char *func,
                            const char *message, int error) {
        /* Every string handed to sd_journal_sendv() must outlive the call;
         * the field strings are built on the heap and freed together. */
        size_t n = 0, cap = n_fields + 8;
        struct iovec iov[cap];
        char *owned[cap];
        size_t n_owned = 0;

#define ADDF(...)                                                               \
        do {                                                                    \
                char *_s = NULL;                                                \
                if (asprintf(&_s, __VA_ARGS__) >= 0) {                          \
                        owned[n_owned++] = _s;                                  \
                        iov[n++] = (struct iovec) { _s, strlen(_s) };           \
                }                                                               \
        } while (0)

        ADDF("MESSAGE=%s", message);
        ADDF("PRIORITY=%d", level);
        ADDF("SYSLOG_IDENTIFIER=%s", "tlsgate");
        ADDF("CODE_FILE=%s", file);
        ADDF("CODE_LINE=%d", line);
        ADDF("CODE_FUNC=%s", func);
        if (message_id)
                ADDF("MESSAGE_ID=%s", message_id);
        if (error != 0)
                ADDF("ERRNO=%d", error);
        for (size_t i = 0; i < n_fields && n < cap; i++)
                if (fields[i].value)
                        ADDF("%s=%s", fields[i].key, fields[i].value);
#undef ADDF

        if (sd_journal_sendv(iov, (int) n) < 0)
                log_to_stderr(level, message);
        for (size_t i = 0; i < n_owned; i++)
                free(owned[i]);
}

int log_fields_internal(int level, int error, const char *message_id, const LogField *fields,
                        size_t n_fields, const char *file, int line, const char *func,
                        const char *format, ...) {
        int saved_errno = errno;
        char buf[2048];
        va_list ap;

        error = error < 0 ? -error : error;
        if (level > log_max_level)
                return -error;

        /* %m expands to the given error, not to whatever errno happens to be. */
        errno = error;
        va_start(ap, format);
        (void) vsnprintf(buf, sizeof buf, format, ap);
        va_end(ap);

        if (log_to_journal)
                log_to_journald(level, message_id, fields, n_fields, file, line, func, buf, error);
        else
                log_to_stderr(level, buf);

        errno = saved_errno;
        return -error;
}
