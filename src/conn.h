/* SPDX-License-Identifier: MIT */
#pragma once

/* One client connection: non-blocking TLS handshake, verification and
 * authorization of the peer, a non-blocking dial to the target, then the
 * data pump with bounded buffers, backpressure and half-close. The states
 * are explicit (ConnState) and every transition is logged at debug level. */

#include <gnutls/gnutls.h>
#include <sys/socket.h>
#include <systemd/sd-event.h>

#include "bufpool.h"
#include "config.h"
#include "creds.h"

typedef struct Conn Conn;

/* What the connections of one serving thread share (src/worker.c: one per
 * --threads, each with its own loop); the pointers lead to what all threads
 * share. The owner is told through on_conn_freed when a connection goes
 * away, so that it can resume accepting or finish a shutdown. */
typedef struct ConnServer {
        sd_event *event;
        const Config *config;
        CurrentCreds *current;          /* what new handshakes use (shared, locked) */
        gnutls_datum_t ticket_key;      /* session ticket encryption key */
        struct Challenges *challenges;  /* ACME: pending TLS-ALPN-01 challenges; NULL: no gate */
        struct Metrics *metrics;        /* counters for /_metrics; NULL: none */
        struct sockaddr_storage target;
        socklen_t target_len;

        Conn *conns;                    /* doubly linked list */
        unsigned n_conns;               /* this thread's */
        _Atomic uint64_t *next_id;      /* shared: connection ids are unique in the process */
        BufPool bufpool;                /* this thread's pipe buffers (src/bufpool.h) */

        void (*on_conn_freed)(struct ConnServer *s, void *userdata);
        void *userdata;
} ConnServer;

typedef enum ConnState {
        CONN_HANDSHAKE,
        CONN_DIALING,
        CONN_PIPING,
        _CONN_STATE_MAX,
} ConnState;

const char *conn_state_to_string(ConnState s);

/* Takes ownership of fd (a connected, non-blocking client socket), also on
 * failure. */
int conn_new(ConnServer *s, int fd, const struct sockaddr *peer, socklen_t peer_len, Conn **ret);
Conn *conn_free(Conn *c);

/* Closes every connection at once (forced shutdown). */
void conn_server_close_all(ConnServer *s);

/* The certificate retrieval callback to install on the credential. */
int conn_retrieve_certificate(gnutls_session_t session, const struct gnutls_cert_retr_st *info,
                              gnutls_pcert_st **certs, unsigned *n_certs,
                              gnutls_ocsp_data_st **ocsp, unsigned *n_ocsp,
                              gnutls_privkey_t *key, unsigned *flags);
