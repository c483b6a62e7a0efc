/* SPDX-License-Identifier: MIT */
/* Writes the seed corpus of fuzz-alpn-gate: ClientHello bodies exactly as
 * the daemon's pre hook sees them (from legacy_version on), captured from a
 * real GnuTLS client the way tests/unit/test-alpn-gate.c does it, for TLS
 * 1.2 and 1.3 with the ALPN lists and SNI the gate cares about; and a few
 * hand-made ones derived from a real hello (two ALPN extensions, an empty
 * protocol name, no extensions at all).
 *
 *   build-fuzz/tests/fuzz/gen-client-hellos tests/fuzz/corpus/alpn-gate
 *
 * The hellos carry fresh randoms and key shares, so the files change on
 * every run; regenerate only when the set of cases changes. */

#include <gnutls/gnutls.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define STOP_AFTER_HELLO GNUTLS_E_APPLICATION_ERROR_MIN

typedef struct Capture {
        unsigned char *msg;
        size_t len;
} Capture;

typedef struct ClientArgs {
        int fd;
        const char *priority;
        const char *const *alpn;
        unsigned n_alpn;
        const char *sni;
} ClientArgs;

static int capture_hook(gnutls_session_t s, unsigned htype, unsigned when, unsigned incoming,
                        const gnutls_datum_t *msg) {
        Capture *cap = gnutls_session_get_ptr(s);

        if (htype != GNUTLS_HANDSHAKE_CLIENT_HELLO || when != GNUTLS_HOOK_PRE || !incoming)
                return 0;
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

        if (gnutls_certificate_allocate_credentials(&cred) < 0 ||
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
        (void) gnutls_handshake(s);
        gnutls_deinit(s);
        gnutls_certificate_free_credentials(cred);
        return NULL;
}

static Capture capture_hello(const char *priority, const char *const *alpn, unsigned n_alpn,
                             const char *sni) {
        gnutls_certificate_credentials_t cred;
        gnutls_session_t s;
        Capture cap = {};
        ClientArgs args;
        pthread_t t;
        int sv[2];

        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
                abort();
        args = (ClientArgs) { sv[1], priority, alpn, n_alpn, sni };
        if (pthread_create(&t, NULL, client_thread, &args) != 0 ||
            gnutls_certificate_allocate_credentials(&cred) < 0 ||
            gnutls_init(&s, GNUTLS_SERVER) < 0)
                abort();
        (void) gnutls_set_default_priority(s);
        (void) gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, cred);
        gnutls_session_set_ptr(s, &cap);
        gnutls_handshake_set_hook_function(s, GNUTLS_HANDSHAKE_CLIENT_HELLO, GNUTLS_HOOK_PRE,
                                           capture_hook);
        gnutls_transport_set_int(s, sv[0]);
        if (gnutls_handshake(s) != STOP_AFTER_HELLO || !cap.msg)
                abort();
        gnutls_deinit(s);
        gnutls_certificate_free_credentials(cred);
        close(sv[0]);
        pthread_join(t, NULL);
        close(sv[1]);
        return cap;
}

static void save(const char *dir, const char *name, const unsigned char *p, size_t n) {
        char path[4096];
        FILE *f;

        snprintf(path, sizeof path, "%s/%s", dir, name);
        f = fopen(path, "we");
        if (!f || fwrite(p, 1, n, f) != n || fclose(f) != 0) {
                perror(path);
                exit(EXIT_FAILURE);
        }
}

/* Offset of the extension block's length field, or 0 when there is none. */
static size_t extensions_offset(const unsigned char *m, size_t n) {
        size_t p = 2 + 32;

        p += 1 + m[p];                          /* session id */
        p += 2 + ((size_t) m[p] << 8 | m[p + 1]); /* cipher suites */
        p += 1 + m[p];                          /* compression methods */
        return p + 2 <= n ? p : 0;
}

/* The hello with its extension block replaced by ext (n bytes, without the
 * block's length field); ext NULL drops the block. */
static void save_with_extensions(const char *dir, const char *name, const Capture *c,
                                 const unsigned char *ext, size_t n) {
        size_t off = extensions_offset(c->msg, c->len);
        unsigned char *m = malloc(off + 2 + n);

        if (!off || !m)
                abort();
        memcpy(m, c->msg, off);
        if (ext) {
                m[off] = (unsigned char) (n >> 8);
                m[off + 1] = (unsigned char) n;
                memcpy(m + off + 2, ext, n);
        }
        save(dir, name, m, ext ? off + 2 + n : off);
        free(m);
}

int main(int argc, char *argv[]) {
        static const char *const probe[] = { "acme-tls/1" };
        static const char *const with_h2[] = { "acme-tls/1", "h2" };
        static const char *const h2_first[] = { "h2", "acme-tls/1" };
        static const char *const twice[] = { "acme-tls/1", "acme-tls/1" };
        static const char *const upper[] = { "ACME-TLS/1" };
        static const char *const h2[] = { "h2", "http/1.1" };
        static const char *const eight[] = { "a", "b", "c", "d", "e", "f", "g", "acme-tls/1" };
        static const char T12[] = "NORMAL:-VERS-ALL:+VERS-TLS1.2";
        static const char T13[] = "NORMAL:-VERS-ALL:+VERS-TLS1.3";
        static const struct {
                const char *name, *priority;
                const char *const *alpn;
                unsigned n_alpn;
                const char *sni;
        } table[] = {
                { "real-probe", "NORMAL", probe, 1, "example.org" },
                { "real-probe-tls12", T12, probe, 1, "example.org" },
                { "real-probe-tls13", T13, probe, 1, "Example.ORG" },
                { "real-probe-no-sni", "NORMAL", probe, 1, NULL },
                { "real-probe-and-h2", "NORMAL", with_h2, 2, "example.org" },
                { "real-h2-and-probe", T12, h2_first, 2, "example.org" },
                { "real-probe-twice", "NORMAL", twice, 2, "example.org" },
                { "real-probe-upper", T13, upper, 1, "example.org" },
                { "real-h2", "NORMAL", h2, 2, "www.example.org" },
                { "real-eight", "NORMAL", eight, 8, "example.org" },
                { "real-no-alpn", "NORMAL", NULL, 0, "example.org" },
                { "real-no-alpn-tls12", T12, NULL, 0, NULL },
        };
        /* type 16, then the list: acme-tls/1 */
        static const unsigned char alpn_ext[] = { 0, 16, 0, 13, 0, 11, 10, 'a', 'c', 'm', 'e',
                                                  '-', 't', 'l', 's', '/', '1' };
        static const unsigned char empty_name[] = { 0, 16, 0, 5, 0, 3, 0, 1, 'x' };
        static const unsigned char sni_ext[] = { 0, 0, 0, 9, 0, 7, 0, 0, 4, 'a', '.', 'b', 'c' };
        unsigned char two[2 * sizeof alpn_ext + sizeof sni_ext];
        Capture c;

        if (argc != 2) {
                fprintf(stderr, "usage: %s DIR\n", argv[0]);
                return EXIT_FAILURE;
        }
        for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
                c = capture_hello(table[i].priority, table[i].alpn, table[i].n_alpn,
                                  table[i].sni);
                save(argv[1], table[i].name, c.msg, c.len);
                free(c.msg);
        }

        c = capture_hello(T12, NULL, 0, NULL);
        memcpy(two, alpn_ext, sizeof alpn_ext);
        memcpy(two + sizeof alpn_ext, sni_ext, sizeof sni_ext);
        memcpy(two + sizeof alpn_ext + sizeof sni_ext, alpn_ext, sizeof alpn_ext);
        save_with_extensions(argv[1], "made-two-alpn", &c, two, sizeof two);
        save_with_extensions(argv[1], "made-empty-name", &c, empty_name, sizeof empty_name);
        save_with_extensions(argv[1], "made-probe-only", &c, alpn_ext, sizeof alpn_ext);
        save_with_extensions(argv[1], "made-no-extensions", &c, NULL, 0);
        free(c.msg);
        return EXIT_SUCCESS;
}
