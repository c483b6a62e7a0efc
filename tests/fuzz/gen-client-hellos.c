/* SPDX-License-Identifier: MIT */
/* Writes the seed corpus of fuzz-alpn-gate: ClientHello bodies exactly as
 * the daemon's pre hook sees them (from legacy_version on), captured from a
 * real GnuTLS client (tests/common/hello-capture.c, as the unit tests do), for TLS
 * 1.2 and 1.3 with the ALPN lists and SNI the gate cares about; and a few
 * hand-made ones derived from a real hello (two ALPN extensions, an empty
 * protocol name, no extensions at all).
 *
 *   build-fuzz/tests/fuzz/gen-client-hellos tests/fuzz/corpus/alpn-gate
 *
 * The hellos carry fresh randoms and key shares, so the files change on
 * every run; regenerate only when the set of cases changes. */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hello-capture.h"

/* A hello, or the end of the run: this is a generator, not a test. */
static HelloCapture capture_hello(const char *priority, const char *const *alpn,
                                  unsigned n_alpn, const char *sni) {
        HelloCapture c;

        if (!hello_capture(priority, alpn, n_alpn, sni, &c)) {
                fprintf(stderr, "no ClientHello captured for %s\n", priority);
                exit(EXIT_FAILURE);
        }
        return c;
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
static void save_with_extensions(const char *dir, const char *name, const HelloCapture *c,
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
        HelloCapture c;

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
