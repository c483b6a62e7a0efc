/* SPDX-License-Identifier: MIT */
#pragma once

/* The control socket, for a reload whose outcome its caller learns.
 *
 * SIGHUP cannot answer, so `systemctl reload` used to succeed whatever
 * tlsgate made of the new settings. Under the shipped units tlsgate listens
 * on a UNIX socket in its runtime directory ($RUNTIME_DIRECTORY, from
 * RuntimeDirectory=), and ExecReload= runs `tlsgate reload`, which asks
 * for a reload there and exits with its outcome. The reload itself is the
 * one of SIGHUP (src/reload.c), run by the daemon with its own view of the
 * files and credentials: a separate checking process could not see systemd's
 * credentials from ExecReload= under systemd 252 (DynamicUser= and a mount
 * namespace hide them from processes other than the main one).
 *
 * The protocol: one SOCK_SEQPACKET message "reload" from the client; one
 * message back, "ok" or "failed: REASON". The socket is mode 0600 in a
 * directory of tlsgate's own, and only processes of tlsgate's user or root
 * are answered (SO_PEERCRED). */

#include <stdbool.h>
#include <systemd/sd-event.h>

#include "macro.h"

#define CONTROL_SOCKET_NAME "control"
#define CONTROL_REPLY_MAX (16U * 1024U)

typedef struct ControlServer ControlServer;

/* The first directory of runtime_dirs (the value of $RUNTIME_DIRECTORY,
 * which systemd joins with ':' when there are several); NULL when unset or
 * empty, or out of memory. */
char *control_runtime_dir(const char *runtime_dirs);

/* Runs one reload for a client: 0 when it took effect, or a negative errno
 * and *ret_reason (malloc'ed, may be left NULL) saying why not. */
typedef int (*control_reload_t)(void *userdata, char **ret_reason);

/* Listens on DIR/control (a stale socket there is replaced) on the loop e;
 * a client's "reload" calls reload(userdata). Returns 0 or a negative errno
 * with *ret_error set. */
int control_server_new(sd_event *e, control_reload_t reload, void *userdata, const char *dir,
                       ControlServer **ret, char **ret_error);
/* Stops listening and removes the socket. */
ControlServer *control_server_free(ControlServer *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(ControlServer *, control_server_free);

/* The client: asks the tlsgate listening in dir to reload and waits at
 * most timeout for its answer (a command-line tool, it blocks). Returns 0
 * when the reload took effect, -EINVAL when tlsgate kept its old settings
 * (*ret_reason: why), another negative errno when there was no answer
 * (-ENOENT, -ECONNREFUSED: nobody listens; -ETIMEDOUT). */
int control_request_reload(const char *dir, usec_t timeout, char **ret_reason);
