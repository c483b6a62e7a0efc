/* SPDX-License-Identifier: MIT */
/* The ALPN gate on ClientHellos a real GnuTLS client sends (captured by a
 * GnuTLS server's pre hook, so the bytes are exactly what the daemon sees),
 * and on hand-made hellos for what no GnuTLS client produces: two ALPN
 * extensions, empty names, lying length fields, truncation. */

#include <stdlib.h>
#include <string.h>

#include "alpn-gate.h"
#include "hello-capture.h"
#include "macro.h"
#include "test-util.h"

/* --- real hellos ----------------------------------------------------------- */

static const char PRIO_ANY[] = "NORMAL";
static const char PRIO_TLS12[] = "NORMAL:-VERS-ALL:+VERS-TLS1.2";
static const char PRIO_TLS13[] = "NORMAL:-VERS-ALL:+VERS-TLS1.3";

static void test_real_hellos(void) {
        static const char *const probe[] = { "acme-tls/1" };
        static const char *const with_h2[] = { "acme-tls/1", "h2" };
        static const char *const h2_first[] = { "h2", "acme-tls/1" };
        static const char *const twice[] = { "acme-tls/1", "acme-tls/1" };
        static const char *const upper[] = { "ACME-TLS/1" };
        static const char *const prefix[] = { "acme-tls/" };
        static const char *const longer[] = { "acme-tls/10" };
        static const char *const h2[] = { "h2" };
        static const char *const eight[] = { "a", "b", "c", "d", "e", "f", "g", "acme-tls/1" };
        static const struct {
                const char *priority;
                const char *const *alpn;
                unsigned n_alpn;
                const char *sni;
                GateClass expected;
        } table[] = {
                { PRIO_ANY, probe, 1, "example.org", GATE_ACME_PROBE },
                { PRIO_TLS12, probe, 1, "example.org", GATE_ACME_PROBE },
                { PRIO_TLS13, probe, 1, "Example.ORG", GATE_ACME_PROBE },
                { PRIO_ANY, probe, 1, NULL, GATE_ACME_PROBE }, /* lookup fails later */
                { PRIO_ANY, with_h2, 2, "example.org", GATE_NORMAL },
                { PRIO_ANY, h2_first, 2, "example.org", GATE_NORMAL },
                { PRIO_ANY, twice, 2, "example.org", GATE_NORMAL },
                { PRIO_ANY, upper, 1, "example.org", GATE_NORMAL },
                { PRIO_ANY, prefix, 1, "example.org", GATE_NORMAL },
                { PRIO_ANY, longer, 1, "example.org", GATE_NORMAL },
                { PRIO_ANY, h2, 1, "example.org", GATE_NORMAL },
                { PRIO_TLS12, h2, 1, NULL, GATE_NORMAL },
                { PRIO_ANY, eight, 8, "example.org", GATE_NORMAL },
                { PRIO_ANY, NULL, 0, "example.org", GATE_NORMAL },
                { PRIO_TLS12, NULL, 0, NULL, GATE_NORMAL },
        };

        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                HelloCapture cap;
                GateHello h;

                fprintf(stderr, "real hello %zu\n", i);
                if (!CHECK(hello_capture(table[i].priority, table[i].alpn, table[i].n_alpn,
                                         table[i].sni, &cap)))
                        continue;
                /* The body starts at legacy_version: no handshake header. */
                CHECK(cap.len > 38 && cap.msg[0] == 0x03 && cap.msg[1] == 0x03);
                if (!CHECK(alpn_gate_parse_client_hello(cap.msg, cap.len, &h) == 0)) {
                        free(cap.msg);
                        continue;
                }
                CHECK_INT_EQ(alpn_gate_classify(&h), table[i].expected);
                CHECK_INT_EQ(h.n_alpn_extensions, table[i].n_alpn > 0 ? 1 : 0);
                CHECK(h.alpn_well_formed);
                CHECK_INT_EQ(h.n_protocols, table[i].n_alpn);
                for (unsigned j = 0; j < table[i].n_alpn; j++) {
                        CHECK_INT_EQ(h.protocols[j].size, strlen(table[i].alpn[j]));
                        CHECK(memcmp(h.protocols[j].data, table[i].alpn[j],
                                     h.protocols[j].size) == 0);
                }
                free(cap.msg);
        }
}

/* --- hand-made hellos ------------------------------------------------------ */

typedef struct Buf {
        uint8_t data[70000];
        size_t len;
} Buf;

static void put(Buf *b, const void *p, size_t n) {
        if (b->len + n > sizeof b->data)
                abort();
        memcpy(b->data + b->len, p, n);
        b->len += n;
}

static void put_u8(Buf *b, unsigned v) {
        uint8_t x = (uint8_t) v;
        put(b, &x, 1);
}

static void put_u16(Buf *b, unsigned v) {
        uint8_t x[2] = { (uint8_t) (v >> 8), (uint8_t) v };
        put(b, x, 2);
}

/* ALPN extension data: the list length, then each name with its length. */
static void alpn_data(Buf *b, const char *const *names, size_t n) {
        size_t total = 0;

        for (size_t i = 0; i < n; i++)
                total += 1 + strlen(names[i]);
        put_u16(b, (unsigned) total);
        for (size_t i = 0; i < n; i++) {
                put_u8(b, (unsigned) strlen(names[i]));
                put(b, names[i], strlen(names[i]));
        }
}

static void sni_data(Buf *b, const char *name, size_t len) {
        put_u16(b, (unsigned) (3 + len));
        put_u8(b, 0);
        put_u16(b, (unsigned) len);
        put(b, name, len);
}

typedef struct Ext {
        unsigned type;
        Buf *data;
} Ext;

/* A TLS 1.3 style ClientHello body (RFC 8446 section 4.1.2) with the given
 * extensions; n_ext < 0 leaves out the extension block altogether. */
static void make_hello(Buf *out, const Ext *ext, int n_ext) {
        static const uint8_t random[32] = { 1, 2, 3, 4, 5, 6, 7, 8 };
        Buf *exts = calloc(1, sizeof(Buf));

        if (!exts)
                abort();
        out->len = 0;
        put_u16(out, 0x0303);
        put(out, random, sizeof random);
        put_u8(out, 0);                 /* legacy_session_id */
        put_u16(out, 4);                /* cipher_suites */
        put_u16(out, 0x1301);
        put_u16(out, 0xc02b);
        put_u8(out, 1);                 /* legacy_compression_methods */
        put_u8(out, 0);
        if (n_ext >= 0) {
                for (int i = 0; i < n_ext; i++) {
                        put_u16(exts, ext[i].type);
                        put_u16(exts, (unsigned) ext[i].data->len);
                        put(exts, ext[i].data->data, ext[i].data->len);
                }
                put_u16(out, (unsigned) exts->len);
                put(out, exts->data, exts->len);
        }
        free(exts);
}

static Buf *buf_new(void) {
        Buf *b = calloc(1, sizeof(Buf));
        if (!b)
                abort();
        return b;
}

static Buf *buf_bytes(const void *p, size_t n) {
        Buf *b = buf_new();
        put(b, p, n);
        return b;
}

static Buf *buf_alpn(const char *const *names, size_t n) {
        Buf *b = buf_new();
        alpn_data(b, names, n);
        return b;
}

static Buf *buf_sni(const char *name, size_t len) {
        Buf *b = buf_new();
        sni_data(b, name, len);
        return b;
}

/* Parses a hand-made hello with one ALPN extension (raw data) and an SNI. */
static int parse_with_alpn(Buf *alpn, GateHello *h) {
        Buf *hello = buf_new(), *sni = buf_sni("example.org", 11);
        Ext ext[] = { { 0, sni }, { 16, alpn } };
        int r;

        make_hello(hello, ext, ELEMENTSOF(ext));
        r = alpn_gate_parse_client_hello(hello->data, hello->len, h);
        free(hello);
        free(sni);
        return r;
}

static void test_alpn_shapes(void) {
        static const char *const probe[] = { "acme-tls/1" };
        static const char *const with_empty[] = { "acme-tls/1", "" };
        static const char *const empty_first[] = { "", "acme-tls/1" };
        static const char *const only_empty[] = { "" };
        static const struct {
                const char *what;
                const void *data;
                size_t size;
                GateClass expected;
        } raw[] = {
                /* 00 0b | 0a "acme-tls/1": the probe, spelled out */
                { "exact", "\x00\x0b\x0a" "acme-tls/1", 13, GATE_ACME_PROBE },
                { "extension empty", "", 0, GATE_MALFORMED },
                { "one byte", "\x00", 1, GATE_MALFORMED },
                { "empty list", "\x00\x00", 2, GATE_MALFORMED },
                { "list length too long", "\x00\x0c\x0a" "acme-tls/1", 13, GATE_MALFORMED },
                { "list length too short", "\x00\x0a\x0a" "acme-tls/1", 13, GATE_MALFORMED },
                { "trailing byte", "\x00\x0b\x0a" "acme-tls/1" "x", 14, GATE_MALFORMED },
                { "name length too long", "\x00\x0b\x0b" "acme-tls/1", 13, GATE_MALFORMED },
                { "name length too short", "\x00\x0b\x09" "acme-tls/1", 13, GATE_MALFORMED },
                { "name cut", "\x00\x05\x0a" "acme", 7, GATE_MALFORMED },
                { "list of one length byte", "\x00\x01\x0a", 3, GATE_MALFORMED },
                { "name with NUL", "\x00\x0b\x0a" "acme-tls/\0", 13, GATE_NORMAL },
                { "probe with a NUL after", "\x00\x0c\x0b" "acme-tls/1\0", 14, GATE_NORMAL },
        };
        GateHello h;
        Buf *b;

        for (size_t i = 0; i < ELEMENTSOF(raw); i++) {
                fprintf(stderr, "alpn shape: %s\n", raw[i].what);
                b = buf_bytes(raw[i].data, raw[i].size);
                if (CHECK(parse_with_alpn(b, &h) == 0)) {
                        CHECK_INT_EQ(alpn_gate_classify(&h), raw[i].expected);
                        CHECK_INT_EQ(h.n_alpn_extensions, 1);
                }
                free(b);
        }

        /* Empty protocol names are not allowed (ProtocolName<1..2^8-1>). */
        b = buf_alpn(with_empty, 2);
        CHECK(parse_with_alpn(b, &h) == 0 && alpn_gate_classify(&h) == GATE_MALFORMED);
        CHECK(!h.alpn_well_formed);
        free(b);
        b = buf_alpn(empty_first, 2);
        CHECK(parse_with_alpn(b, &h) == 0 && alpn_gate_classify(&h) == GATE_MALFORMED);
        free(b);
        b = buf_alpn(only_empty, 1);
        CHECK(parse_with_alpn(b, &h) == 0 && alpn_gate_classify(&h) == GATE_MALFORMED);
        free(b);

        /* Oversized but well formed: 300 entries, the probe among them. */
        {
                const char *many[300];
                for (size_t i = 0; i < ELEMENTSOF(many); i++)
                        many[i] = i == 0 ? "acme-tls/1" : "h2";
                b = buf_alpn(many, ELEMENTSOF(many));
                if (CHECK(parse_with_alpn(b, &h) == 0)) {
                        CHECK(h.alpn_well_formed);
                        CHECK_INT_EQ(h.n_protocols, 300);
                        CHECK_INT_EQ(h.protocols[0].size, 10);
                        CHECK_INT_EQ(h.protocols[GATE_PROTOCOLS_MAX - 1].size, 2);
                        CHECK_INT_EQ(alpn_gate_classify(&h), GATE_NORMAL);
                }
                free(b);
        }

        /* The longest name there is, and a list near the 64 KiB limit. */
        {
                char name[256];
                const char *names[1] = { name };
                const char *big[250];

                memset(name, 'x', 255);
                name[255] = '\0';
                b = buf_alpn(names, 1);
                if (CHECK(parse_with_alpn(b, &h) == 0)) {
                        CHECK_INT_EQ(h.protocols[0].size, 255);
                        CHECK(h.protocols[0].data[254] == 'x');
                        CHECK_INT_EQ(alpn_gate_classify(&h), GATE_NORMAL);
                }
                free(b);
                for (size_t i = 0; i < ELEMENTSOF(big); i++)
                        big[i] = name;
                b = buf_alpn(big, ELEMENTSOF(big));
                CHECK(b->len == 2 + 250 * 256);
                if (CHECK(parse_with_alpn(b, &h) == 0)) {
                        CHECK_INT_EQ(h.n_protocols, 250);
                        CHECK_INT_EQ(alpn_gate_classify(&h), GATE_NORMAL);
                }
                free(b);
        }

        /* Two ALPN extensions: a protocol violation, whatever they hold. */
        {
                Buf *a1 = buf_alpn(probe, 1), *a2 = buf_alpn(probe, 1), *hello = buf_new();
                Ext ext[] = { { 16, a1 }, { 0x1234, a2 }, { 16, a2 } };

                make_hello(hello, ext, ELEMENTSOF(ext));
                if (CHECK(alpn_gate_parse_client_hello(hello->data, hello->len, &h) == 0)) {
                        CHECK_INT_EQ(h.n_alpn_extensions, 2);
                        CHECK_INT_EQ(h.n_protocols, 1);
                        CHECK_INT_EQ(alpn_gate_classify(&h), GATE_MALFORMED);
                }
                /* Only the unknown extension in the middle: one ALPN. */
                ext[2].type = 0x1235;
                make_hello(hello, ext, ELEMENTSOF(ext));
                CHECK(alpn_gate_parse_client_hello(hello->data, hello->len, &h) == 0 &&
                      alpn_gate_classify(&h) == GATE_ACME_PROBE);
                /* A malformed second one taints the first. */
                a2->len = 1;
                ext[2].type = 16;
                make_hello(hello, ext, ELEMENTSOF(ext));
                CHECK(alpn_gate_parse_client_hello(hello->data, hello->len, &h) == 0 &&
                      alpn_gate_classify(&h) == GATE_MALFORMED && !h.alpn_well_formed);
                free(a1);
                free(a2);
                free(hello);
        }
}

/* The server name is not the gate's (src/sni.c parses it): whatever the
 * server_name extension holds, well formed or not, one or two of them, the
 * hello parses and the class follows from ALPN alone. */
static void test_sni_plays_no_part(void) {
        static const char *const probe[] = { "acme-tls/1" };
        Buf *alpn = buf_alpn(probe, 1), *hello = buf_new(), *sni;
        char name[300];
        GateHello h;

        static const struct {
                const char *what;
                const char *data;
                size_t size;
        } raw[] = {
                { "plain", "\x00\x0e\x00\x00\x0b" "example.org", 16 },
                { "other type first", "\x00\x13\x01\x00\x02" "xy" "\x00\x00\x0b" "example.org", 21 },
                { "two host names", "\x00\x15\x00\x00\x0b" "example.org" "\x00\x00\x04" "evil", 23 },
                { "embedded NUL", "\x00\x0e\x00\x00\x0b" "example\0org", 16 },
                { "high bit", "\x00\x0e\x00\x00\x0b" "example\xc3org", 16 },
                { "empty name", "\x00\x03\x00\x00\x00", 5 },
                { "empty list", "\x00\x00", 2 },
                { "extension empty", "", 0 },
                { "list length lies", "\x00\x0f\x00\x00\x0b" "example.org", 16 },
                { "trailing byte", "\x00\x0e\x00\x00\x0b" "example.org" "x", 17 },
        };

        for (size_t i = 0; i < ELEMENTSOF(raw); i++) {
                fprintf(stderr, "sni: %s\n", raw[i].what);
                sni = buf_bytes(raw[i].data, raw[i].size);
                Ext ext[] = { { 0, sni }, { 16, alpn } };
                make_hello(hello, ext, ELEMENTSOF(ext));
                if (CHECK(alpn_gate_parse_client_hello(hello->data, hello->len, &h) == 0))
                        CHECK_INT_EQ(alpn_gate_classify(&h), GATE_ACME_PROBE);
                free(sni);
        }

        /* A name too long to be a host name, without ALPN: a normal client. */
        memset(name, 'a', sizeof name);
        sni = buf_sni(name, 255);
        {
                Ext ext[] = { { 0, sni } };
                make_hello(hello, ext, ELEMENTSOF(ext));
                if (CHECK(alpn_gate_parse_client_hello(hello->data, hello->len, &h) == 0))
                        CHECK_INT_EQ(alpn_gate_classify(&h), GATE_NORMAL);
        }
        free(sni);

        /* Two SNI extensions. */
        {
                Buf *s1 = buf_sni("first.example", 13), *s2 = buf_sni("second.example", 14);
                Ext ext[] = { { 0, s1 }, { 0, s2 }, { 16, alpn } };
                make_hello(hello, ext, ELEMENTSOF(ext));
                if (CHECK(alpn_gate_parse_client_hello(hello->data, hello->len, &h) == 0))
                        CHECK_INT_EQ(alpn_gate_classify(&h), GATE_ACME_PROBE);
                free(s1);
                free(s2);
        }
        free(alpn);
        free(hello);
}

static void test_framing(void) {
        static const char *const probe[] = { "acme-tls/1" };
        Buf *alpn = buf_alpn(probe, 1), *sni = buf_sni("example.org", 11), *hello = buf_new();
        Ext ext[] = { { 0, sni }, { 16, alpn } };
        GateHello h, untouched;
        size_t full;

        /* No extension block (an old TLS 1.2 hello): fine, a normal client. */
        make_hello(hello, NULL, -1);
        CHECK(alpn_gate_parse_client_hello(hello->data, hello->len, &h) == 0);
        CHECK_INT_EQ(h.n_alpn_extensions, 0);
        CHECK_INT_EQ(alpn_gate_classify(&h), GATE_NORMAL);
        /* An empty extension block. */
        make_hello(hello, NULL, 0);
        CHECK(alpn_gate_parse_client_hello(hello->data, hello->len, &h) == 0);
        CHECK_INT_EQ(alpn_gate_classify(&h), GATE_NORMAL);

        /* Every truncation of a probe hello fails cleanly, without touching
         * the result (and without reading past the end: run under ASan). */
        make_hello(hello, ext, ELEMENTSOF(ext));
        full = hello->len;
        CHECK(alpn_gate_parse_client_hello(hello->data, full, &h) == 0);
        CHECK_INT_EQ(alpn_gate_classify(&h), GATE_ACME_PROBE);
        memset(&untouched, 0xa5, sizeof untouched);
        for (size_t len = 0; len < full; len++) {
                uint8_t *copy = malloc(len ? len : 1);
                GateHello t = untouched;
                int r;

                if (!copy)
                        abort();
                memcpy(copy, hello->data, len);
                r = alpn_gate_parse_client_hello(copy, len, &t);
                /* Cut right after the compression methods it is a valid
                 * hello without extensions. */
                if (len == full - 2 - 4 - sni->len - 4 - alpn->len)
                        CHECK(r == 0 && alpn_gate_classify(&t) == GATE_NORMAL);
                else if (!test_record(r == -EBADMSG, __FILE__, __LINE__, "truncated hello refused"))
                        fprintf(stderr, "        at length %zu of %zu: %d\n", len, full, r);
                if (r < 0)
                        CHECK(memcmp(&t, &untouched, sizeof t) == 0);
                free(copy);
        }

        /* Lying lengths in the hello and extension framing. */
        {
                static const struct {
                        const char *what;
                        size_t offset;  /* of the 16-bit field, from the end of the fixed part */
                        int delta;
                } lies[] = {
                        { "extensions length +1", 0, +1 },
                        { "extensions length -1", 0, -1 },
                        { "SNI extension length +1", 4, +1 },
                        { "SNI extension length -1", 4, -1 },
                        { "ALPN extension length +1", 6 + 16 + 2, +1 },
                        { "ALPN extension length +100", 6 + 16 + 2, +100 },
                };
                /* version, random, session id, suites, compression */
                size_t fixed = 2 + 32 + 1 + 2 + 4 + 1 + 1;

                CHECK_INT_EQ(sni->len, 16);
                for (size_t i = 0; i < ELEMENTSOF(lies); i++) {
                        uint8_t *p;
                        unsigned v;

                        fprintf(stderr, "framing: %s\n", lies[i].what);
                        make_hello(hello, ext, ELEMENTSOF(ext));
                        p = hello->data + fixed + lies[i].offset;
                        v = (unsigned) ((p[0] << 8 | p[1]) + lies[i].delta);
                        p[0] = (uint8_t) (v >> 8);
                        p[1] = (uint8_t) v;
                        CHECK_INT_EQ(alpn_gate_parse_client_hello(hello->data, hello->len, &h),
                                     -EBADMSG);
                }
                /* Session id and cipher suite lengths running past the end. */
                make_hello(hello, ext, ELEMENTSOF(ext));
                hello->data[34] = 0xff;
                CHECK_INT_EQ(alpn_gate_parse_client_hello(hello->data, hello->len, &h), -EBADMSG);
                make_hello(hello, ext, ELEMENTSOF(ext));
                hello->data[35] = 0xff;
                CHECK_INT_EQ(alpn_gate_parse_client_hello(hello->data, hello->len, &h), -EBADMSG);
                /* Not TLS: the version's major byte is not 3. */
                make_hello(hello, ext, ELEMENTSOF(ext));
                hello->data[0] = 0x02;
                CHECK_INT_EQ(alpn_gate_parse_client_hello(hello->data, hello->len, &h), -EBADMSG);
        }

        CHECK_INT_EQ(alpn_gate_parse_client_hello(NULL, 0, &h), -EBADMSG);
        CHECK_INT_EQ(alpn_gate_parse_client_hello(NULL, 5, &h), -EINVAL);
        CHECK_INT_EQ(alpn_gate_parse_client_hello(hello->data, hello->len, NULL), -EINVAL);
        CHECK_INT_EQ(alpn_gate_classify(NULL), GATE_MALFORMED);

        free(alpn);
        free(sni);
        free(hello);
}

static void test_strings(void) {
        CHECK_STR_EQ(gate_class_to_string(GATE_NORMAL), "normal");
        CHECK_STR_EQ(gate_class_to_string(GATE_ACME_PROBE), "acme-probe");
        CHECK_STR_EQ(gate_class_to_string(GATE_MALFORMED), "malformed");
        CHECK(gate_class_to_string(_GATE_CLASS_MAX) == NULL);
        CHECK(gate_class_to_string((GateClass) -1) == NULL);
}

int main(void) {
        test_real_hellos();
        test_alpn_shapes();
        test_sni_plays_no_part();
        test_framing();
        test_strings();
        return test_summary();
}
