/* SPDX-License-Identifier: MIT */
#pragma once

/* One connection, from accept to close, in four files: conn.c (life cycle,
 * deadlines, dialing the target, I/O dispatch), conn-tls.c (the GnuTLS
 * session, its transport, the ALPN gate's hooks, the handshake),
 * conn-verify.c (the client's chain, pins and access rules; refusals) and
 * conn-pump.c (the bytes after the handshake, both ways). Internal to
 * them: the rest of tlsgate uses conn.h. */

#include <gnutls/gnutls.h>
#include <netinet/in.h>

#include "alpn-gate.h"
#include "conn.h"
#include "log.h"
#include "sni.h"
#include "verify-cache.h"

/* What one read from the target may bring: four full TLS records' worth,
 * which go out to the client as one train of segments (conn_push()), and
 * still small enough that a slow peer holds back the fast one
 * (backpressure). The buffers come from the server's BufPool only while
 * bytes are in flight. */
#define PIPE_BUFFER_SIZE BUFPOOL_BUFFER_SIZE
/* Decrypted records written to the target in one call, at most: fewer,
 * larger writes and segments (bench/run.sh: ~20 % less CPU per GB). */
#define C2T_BATCH 4
/* Work done per wake-up before yielding to other connections. */
#define PUMP_ROUNDS_MAX 16

typedef struct Pipe {
        uint8_t *buf;           /* NULL while nothing is pending: idle pipes hold no memory */
        gnutls_packet_t packet; /* c2t: the decrypted record buf points into, if any */
        size_t off, len;        /* pending bytes are buf[off..len) */
        uint64_t bytes;         /* moved so far, for the log */
        bool eof;               /* the source ended */
        bool shut;              /* the end was passed on to the sink */
        bool big;               /* buf is our own malloc(), not the pool's (a large PROXY header) */
} Pipe;

struct Conn {
        ConnServer *server;
        Conn *prev, *next;
        uint64_t id;
        ConnState state;

        int fd;                 /* client */
        int target_fd;
        gnutls_session_t session;
        Creds *creds;           /* the credential this handshake uses */
        CertBundle *bundle;     /* what conn_retrieve_certificate hands out */

        sd_event_source *io, *target_io;
        sd_event_source *deadline;      /* --connect-timeout, then --close-timeout */
        sd_event_source *lifetime;      /* --max-conn-lifetime */
        sd_event_source *resume;        /* continues a pump that used up its rounds */
        sd_event_source *dial_retry;    /* connect() again: a unix target's queue was full */
        usec_t dial_retry_delay;
        usec_t start;

        Pipe c2t, t2c;
        /* Records decrypted right after the one c2t holds, written to the
         * target together with it; a read result (an end, an error) met
         * while gathering them waits until they are written. */
        gnutls_packet_t c2t_next[C2T_BATCH - 1];
        unsigned n_c2t_next;
        ssize_t c2t_deferred;
        bool c2t_has_deferred;
        GateClass gate;         /* the first ClientHello's class (ALPN gate) */
        bool gate_decided;
        bool bundle_chosen;     /* a probe's certificate is picked once, even across HRR */
        bool refusal_logged;    /* a hook refused the handshake and said why */
        bool peer_checked;      /* verdict holds the client chain's verification and rules */
        VerifyVerdict verdict;
        unsigned verify_status; /* why verification failed (GNUTLS_CERT_*), or 0 */
        const char *verify_error; /* or this, when there is no status to print */
        bool send_blocked;      /* a TLS send (or bye) is waiting for POLLOUT */
        bool send_more;         /* more records follow this one at once: MSG_MORE */
        bool recv_wants_write;  /* a TLS read must write first (key update) */
        bool client_fin;        /* the client's TCP FIN, kept from GnuTLS (conn_pull()) */

        char sni[SNI_NAME_MAX + 1];     /* as the client sent it; "" for none */
        char peer[INET6_ADDRSTRLEN + 16];
        char id_str[24];
        char *client_cn;
};

#define CONN_FIELDS(c)                                                                    \
        (LogField[]) {                                                                    \
                { "TLSGATE_PEER", (c)->peer }, { "TLSGATE_CONN_ID", (c)->id_str },         \
                        { "TLSGATE_CLIENT_CN", (c)->client_cn },                          \
                        { "TLSGATE_SNI", (c)->sni[0] ? (c)->sni : NULL },                 \
        }
#define conn_log(c, level, error, message_id, ...) \
        log_fields(level, error, message_id, CONN_FIELDS(c), 4, __VA_ARGS__)

bool conn_quiet(const Conn *c, unsigned what);
usec_t conn_age(const Conn *c);
void conn_close(Conn *c);
/* One more step of what the connection is doing: the handshake or the pump. */
void conn_step(Conn *c);
int conn_arm_deadline(Conn *c, usec_t timeout);
void conn_log_handshake_error(Conn *c, const char *reason);
void conn_dial(Conn *c);
void pipe_release(ConnServer *s, Pipe *p);
int pipe_read_tls(Conn *c);
int conn_schedule_resume(Conn *c);
void conn_pump(Conn *c);
int conn_check_peer(Conn *c);
int conn_on_verify_peer(gnutls_session_t session);
void conn_send_refusal_alert(Conn *c, int error);
void conn_close_refused(Conn *c);
void conn_handshake_done(Conn *c);
void conn_handshake_step(Conn *c);
ssize_t conn_pull(gnutls_transport_ptr_t ptr, void *buf, size_t size);
int conn_setup_session(Conn *c);
