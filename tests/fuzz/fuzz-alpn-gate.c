/* SPDX-License-Identifier: MIT */
/* The ALPN gate on arbitrary ClientHello bodies. Besides "no crash", every
 * input is checked against a second, independent walk of the hello written
 * here from RFC 8446 section 4.1.2 and RFC 7301 section 3.1:
 *   - a hello this walk finds well framed must parse, and the gate must see
 *     the same number of ALPN extensions, the same verdict on the first
 *     one's framing and the same protocol names;
 *   - GATE_ACME_PROBE exactly when there is one well-formed ALPN extension
 *     listing just "acme-tls/1" (the one handshake served without a client
 *     certificate, so a disagreement here is the bug that matters);
 *   - the parsed struct is self-consistent (no empty protocol name).
 * The server name is not the gate's (tests/fuzz/fuzz-sni.c).
 * The seeds in corpus/alpn-gate come from gen-client-hellos. */

#include <errno.h>

#include "alpn-gate.h"
#include "fuzz-util.h"

typedef struct Ref {
        bool framed;            /* strictly well-framed hello */
        unsigned n_alpn;
        bool alpn_ok;           /* every ALPN extension well formed */
        unsigned n_protocols;   /* of the first one */
        const uint8_t *first_alpn;
        size_t first_alpn_len;
} Ref;

static unsigned u16(const uint8_t *p) {
        return (unsigned) p[0] << 8 | p[1];
}

static bool ref_alpn(const uint8_t *d, size_t n, unsigned *ret_count) {
        unsigned count = 0;
        size_t pos = 2;

        if (n < 2 || u16(d) != n - 2 || n - 2 < 2)
                return false;
        while (pos < n) {
                size_t l = d[pos++];

                if (l == 0 || l > n - pos)
                        return false;
                pos += l;
                count++;
        }
        *ret_count = count;
        return true;
}

/* Strict framing: every length exact, nothing left over. */
static void ref_walk(const uint8_t *m, size_t n, Ref *r) {
        size_t p = 34, l, end;

        *r = (Ref) { .alpn_ok = true };
        if (n < p + 1 || m[0] != 3 || m[p] > 32 || n - p - 1 < m[p])
                return;                         /* GnuTLS wants major version 3 */
        p += 1 + m[p];                          /* legacy_session_id<0..32> */
        if (n - p < 2 || (l = u16(m + p)) < 2 || l % 2 != 0 || n - p - 2 < l)
                return;
        p += 2 + l;                             /* cipher_suites<2..2^16-2> */
        if (n - p < 1 || (l = m[p]) < 1 || n - p - 1 < l)
                return;
        p += 1 + l;                             /* legacy_compression_methods<1..2^8-1> */
        if (p == n) {                           /* no extensions */
                r->framed = true;
                return;
        }
        if (n - p < 2 || u16(m + p) != n - p - 2)
                return;
        end = n;
        for (p += 2; p < end;) {
                unsigned type;

                if (end - p < 4 || (l = u16(m + p + 2)) > end - p - 4)
                        return;
                type = u16(m + p);
                if (type == 16) {
                        unsigned count = 0;

                        if (!ref_alpn(m + p + 4, l, &count))
                                r->alpn_ok = false;
                        else if (r->n_alpn == 0) {
                                r->n_protocols = count;
                                r->first_alpn = m + p + 4;
                                r->first_alpn_len = l;
                        }
                        r->n_alpn++;
                }
                p += 4 + l;
        }
        r->framed = true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static const char probe[] = ACME_TLS_ALPN_PROTOCOL;
        GateHello h;
        GateClass c;
        Ref ref;
        int r;

        r = alpn_gate_parse_client_hello(data, size, &h);
        c = alpn_gate_classify(r >= 0 ? &h : NULL);
        CHECK(c >= 0 && c < _GATE_CLASS_MAX && gate_class_to_string(c));
        ref_walk(data, size, &ref);

        if (r < 0) {
                CHECK(r == -EBADMSG);
                CHECK(!ref.framed);
                return 0;
        }

        /* The struct is consistent. */
        if (h.n_alpn_extensions > 0 && h.alpn_well_formed)
                for (unsigned i = 0; i < h.n_protocols && i < GATE_PROTOCOLS_MAX; i++)
                        CHECK(h.protocols[i].size > 0);

        /* The gate's decision follows from what it parsed. */
        CHECK((c == GATE_ACME_PROBE) ==
              (h.n_alpn_extensions == 1 && h.alpn_well_formed && h.n_protocols == 1 &&
               h.protocols[0].size == sizeof probe - 1 &&
               memcmp(h.protocols[0].data, probe, sizeof probe - 1) == 0));
        CHECK((c == GATE_MALFORMED) == (h.n_alpn_extensions > 1 || !h.alpn_well_formed));

        if (!ref.framed)
                return 0;

        /* Where the framing is beyond doubt, the gate saw what the RFCs say is there. */
        CHECK(h.n_alpn_extensions == ref.n_alpn);
        CHECK(h.alpn_well_formed == ref.alpn_ok);
        if (ref.n_alpn > 0 && ref.first_alpn) {
                size_t pos = 2;

                CHECK(h.n_protocols == ref.n_protocols);
                for (unsigned i = 0; i < ref.n_protocols && i < GATE_PROTOCOLS_MAX; i++) {
                        size_t l = ref.first_alpn[pos++];

                        CHECK(h.protocols[i].size == l);
                        CHECK(memcmp(h.protocols[i].data, ref.first_alpn + pos, l) == 0);
                        pos += l;
                }
        }
        return 0;
}
