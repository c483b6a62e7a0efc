/* SPDX-License-Identifier: MIT */
#include <gnutls/gnutls.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "hello-capture.h"

/* What the pre hook stops with; anything negative aborts the handshake. */
#define STOP_AFTER_HELLO GNUTLS_E_APPLICATION_ERROR_MIN

typedef struct ClientArgs {
        int fd;
        const char *priority;
        const char *const *alpn;
        unsigned n_alpn;
        const char *sni;
} ClientArgs;

static int capture_hook(gnutls_session_t s, unsigned htype, unsigned when, unsigned incoming,
                        const gnutls_datum_t *msg) {
        HelloCapture *cap = gnutls_session_get_ptr(s);

        if (htype != GNUTLS_HANDSHAKE_CLIENT_HELLO || when != GNUTLS_HOOK_PRE || !incoming)
                return 0;
        cap->n_calls++;
        free(cap->msg);
        cap->msg = malloc(msg->size);
        if (!cap->msg)
                abort();
        memcpy(cap->msg, msg->data, msg->size);
        cap->len = msg->size;
        return STOP_AFTER_HELLO;
}

static void *client_thread(void *userdata) {
        ClientArgs *a = userdata;
        gnutls_certificate_credentials_t cred;
        gnutls_session_t s;
        gnutls_datum_t protos[8];

        if (a->n_alpn > sizeof protos / sizeof protos[0] ||
            gnutls_certificate_allocate_credentials(&cred) < 0 ||
            gnutls_init(&s, GNUTLS_CLIENT | GNUTLS_NO_SIGNAL) < 0 ||
            gnutls_priority_set_direct(s, a->priority, NULL) < 0 ||
            gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, cred) < 0)
                abort();
        for (unsigned i = 0; i < a->n_alpn; i++)
                protos[i] = (gnutls_datum_t) { (unsigned char *) a->alpn[i],
                                               (unsigned) strlen(a->alpn[i]) };
        if (a->n_alpn > 0 && gnutls_alpn_set_protocols(s, protos, a->n_alpn, 0) < 0)
                abort();
        if (a->sni && gnutls_server_name_set(s, GNUTLS_NAME_DNS, a->sni, strlen(a->sni)) < 0)
                abort();
        gnutls_transport_set_int(s, a->fd);
        (void) gnutls_handshake(s); /* fails: the server stops after the hello */
        gnutls_deinit(s);
        gnutls_certificate_free_credentials(cred);
        return NULL;
}

bool hello_capture(const char *priority, const char *const *alpn, unsigned n_alpn,
                   const char *sni, HelloCapture *ret) {
        gnutls_certificate_credentials_t cred;
        gnutls_session_t s;
        ClientArgs args;
        pthread_t t;
        int sv[2], r;

        *ret = (HelloCapture) {};
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
                abort();
        args = (ClientArgs) { sv[1], priority, alpn, n_alpn, sni };
        if (pthread_create(&t, NULL, client_thread, &args) != 0 ||
            gnutls_certificate_allocate_credentials(&cred) < 0 ||
            gnutls_init(&s, GNUTLS_SERVER) < 0)
                abort();
        (void) gnutls_set_default_priority(s);
        (void) gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, cred);
        gnutls_session_set_ptr(s, ret);
        gnutls_handshake_set_hook_function(s, GNUTLS_HANDSHAKE_CLIENT_HELLO, GNUTLS_HOOK_PRE,
                                           capture_hook);
        gnutls_transport_set_int(s, sv[0]);
        r = gnutls_handshake(s);
        gnutls_deinit(s);
        gnutls_certificate_free_credentials(cred);
        close(sv[0]);
        pthread_join(t, NULL);
        close(sv[1]);
        return r == STOP_AFTER_HELLO && ret->n_calls == 1 && ret->msg;
}
