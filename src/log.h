/* SPDX-License-Identifier: MIT */
#pragma once

/* Logging: native journal entries with fields when stderr is connected to
 * the journal (JOURNAL_STREAM), timestamped lines on stderr otherwise.
 * Functions return the negative errno they were given so that
 * `return log_error_errno(r, "...: %m");` works as in systemd. */

#include <stdbool.h>
#include <stddef.h>
#include <syslog.h>

#include "macro.h"

typedef struct LogField {
        const char *key;   /* journal field name, e.g. "TLSGATE_PEER" */
        const char *value; /* skipped when NULL */
} LogField;

void log_setup(void);
/* True when messages go to the journal (stderr is the journal's stream). */
bool log_is_journal(void);
void log_set_max_level(int level);
int log_get_max_level(void);
/* Forces stderr output (used by tests and when --help style output matters). */
void log_force_stderr(void);

/* The core: level is a syslog priority; error is 0 or an errno (positive or
 * negative) that %m expands to; message_id is a 32-hex-digit MESSAGE_ID or
 * NULL; fields may be NULL. Returns -abs(error). */
int log_fields_internal(int level, int error, const char *message_id, const LogField *fields,
                        size_t n_fields, const char *file, int line, const char *func,
                        const char *format, ...) _printf_(9, 10);

#define log_full_errno(level, error, ...) \
        log_fields_internal(level, error, NULL, NULL, 0, __FILE__, __LINE__, __func__, __VA_ARGS__)
#define log_fields(level, error, message_id, fields, n, ...)                                    \
        log_fields_internal(level, error, message_id, fields, n, __FILE__, __LINE__, __func__, \
                            __VA_ARGS__)

#define log_debug(...) log_full_errno(LOG_DEBUG, 0, __VA_ARGS__)
#define log_info(...) log_full_errno(LOG_INFO, 0, __VA_ARGS__)
#define log_notice(...) log_full_errno(LOG_NOTICE, 0, __VA_ARGS__)
#define log_warning(...) log_full_errno(LOG_WARNING, 0, __VA_ARGS__)
#define log_error(...) log_full_errno(LOG_ERR, 0, __VA_ARGS__)
#define log_debug_errno(e, ...) log_full_errno(LOG_DEBUG, e, __VA_ARGS__)
#define log_info_errno(e, ...) log_full_errno(LOG_INFO, e, __VA_ARGS__)
#define log_warning_errno(e, ...) log_full_errno(LOG_WARNING, e, __VA_ARGS__)
#define log_error_errno(e, ...) log_full_errno(LOG_ERR, e, __VA_ARGS__)
#define log_oom() log_error_errno(ENOMEM, "Out of memory.")

/* Stable MESSAGE_IDs for events people alert on; never change a value. */
#define MESSAGE_ID_CLIENT_DENIED "0d3b1ac2a4bf4f7e9a1c7f52b6e0c901"
#define MESSAGE_ID_HANDSHAKE_FAILED "5f6c1e1d8a0b4a36b0e3c1a7d9f2e402"
#define MESSAGE_ID_DIAL_FAILED "9a7e4f0c2b5d4c8e8f1a3b6d5c7e0f03"
#define MESSAGE_ID_CERT_OBTAINED "3c8f2d6e0a1b4e5f9d7c6b5a4e3f2d10"
#define MESSAGE_ID_CERT_RENEWED "7b1e9c3d5f2a4b6c8e0d1f3a5c7e9b11"
#define MESSAGE_ID_RENEWAL_FAILED "e4a2c6b8d0f14e3a9c5b7d1f3e5a7c12"
#define MESSAGE_ID_RELOAD_FAILED "019f02c829b04d3f93b70417ed251f4a"
#define MESSAGE_ID_OCSP_REVOKED "3c126ce1d1224a78a1ca804cbdcbd85e"
