/* SPDX-License-Identifier: MIT */
/* The server_name parser (src/sni.c): hand-made extension bodies, every
 * byte value, the length bound, what a real GnuTLS client sends, and that
 * this GnuTLS lets a session take the extension over. */

#include <errno.h>
#include <gnutls/gnutls.h>

#include "hello-capture.h"
#include "macro.h"
#include "sni.h"
#include "test-util.h"

#define NAME_SENTINEL "untouched"

static void check_parse(const char *what, const void *data, size_t size, int expected_r,
                        const char *expected_name) {
        char name[SNI_NAME_MAX + 1] = NAME_SENTINEL;
        int r;

        fprintf(stderr, "sni: %s\n", what);
        r = sni_parse(data, size, name);
        CHECK_INT_EQ(r, expected_r);
        /* ret is written only on success. */
        CHECK_STR_EQ(name, r >= 0 ? expected_name : NAME_SENTINEL);
}

static void test_bodies(void) {
        static const struct {
                const char *what;
                const char *data;
                size_t size;
                int r;
                const char *name;
        } table[] = {
                { "plain", "\x00\x0e\x00\x00\x0b" "example.org", 16, 0, "example.org" },
                { "underscore", "\x00\x0d\x00\x00\x0a" "new_server", 15, 0, "new_server" },
                { "compose service", "\x00\x09\x00\x00\x06" "my_api", 11, 0, "my_api" },
                { "underscore label", "\x00\x0e\x00\x00\x0b" "a_b.example", 16, 0,
                  "a_b.example" },
                { "case kept", "\x00\x0e\x00\x00\x0b" "Example.Org", 16, 0, "Example.Org" },
                { "trailing dot kept", "\x00\x0a\x00\x00\x07" "my_api.", 12, 0, "my_api." },
                { "one byte", "\x00\x04\x00\x00\x01" "_", 6, 0, "_" },
                { "other type only", "\x00\x05\x01\x00\x02" "xy", 7, 0, "" },
                { "other type first", "\x00\x13\x01\x00\x02" "xy" "\x00\x00\x0b" "example.org",
                  21, 0, "example.org" },
                { "other type after", "\x00\x13\x00\x00\x0b" "example.org" "\x07\x00\x02" "xy",
                  21, 0, "example.org" },
                { "two host names", "\x00\x15\x00\x00\x0b" "example.org" "\x00\x00\x04" "evil",
                  23, -ENOTUNIQ, NULL },
                /* Found by the fuzzer: framing is judged first. */
                { "two host names, then bad framing",
                  "\x00\x19\x00\x00\x06" "my_api" "\x00\x00\x0a" "oeeath.xrmple", 27, -EBADMSG,
                  NULL },
                { "embedded NUL", "\x00\x0e\x00\x00\x0b" "example\0org", 16, -EINVAL, NULL },
                { "NUL at the end", "\x00\x0e\x00\x00\x0b" "example.or\0", 16, -EINVAL, NULL },
                { "space", "\x00\x0e\x00\x00\x0b" "example org", 16, -EINVAL, NULL },
                { "high bit", "\x00\x0e\x00\x00\x0b" "example\xc3org", 16, -EINVAL, NULL },
                { "slash", "\x00\x0e\x00\x00\x0b" "example/org", 16, -EINVAL, NULL },
                { "star", "\x00\x0e\x00\x00\x0b" "*.example.o", 16, -EINVAL, NULL },
                { "colon", "\x00\x0e\x00\x00\x0b" "example:443", 16, -EINVAL, NULL },
                { "bad second host name", "\x00\x13\x00\x00\x0b" "example.org" "\x00\x00\x02" "a\0",
                  21, -ENOTUNIQ, NULL },
                { "empty name", "\x00\x03\x00\x00\x00", 5, -EBADMSG, NULL },
                { "empty name of other type", "\x00\x03\x01\x00\x00", 5, -EBADMSG, NULL },
                { "empty list", "\x00\x00", 2, -EBADMSG, NULL },
                { "extension empty", "", 0, -EBADMSG, NULL },
                { "one byte only", "\x00", 1, -EBADMSG, NULL },
                { "list length lies (long)", "\x00\x0f\x00\x00\x0b" "example.org", 16, -EBADMSG,
                  NULL },
                { "list length lies (short)", "\x00\x0d\x00\x00\x0b" "example.org", 16, -EBADMSG,
                  NULL },
                { "name length lies (long)", "\x00\x0e\x00\x00\x0c" "example.org", 16, -EBADMSG,
                  NULL },
                { "name length lies (short)", "\x00\x0e\x00\x00\x0a" "example.org", 16, -EBADMSG,
                  NULL },
                { "trailing byte", "\x00\x0e\x00\x00\x0b" "example.org" "x", 17, -EBADMSG, NULL },
                { "entry header cut", "\x00\x02\x00\x00", 4, -EBADMSG, NULL },
        };

        for (size_t i = 0; i < ELEMENTSOF(table); i++)
                check_parse(table[i].what, table[i].data, table[i].size, table[i].r,
                            table[i].name);
        check_parse("NULL, empty", NULL, 0, -EBADMSG, NULL);
}

static size_t make_body(uint8_t *buf, const uint8_t *host, size_t len) {
        buf[0] = (uint8_t) ((len + 3) >> 8);
        buf[1] = (uint8_t) (len + 3);
        buf[2] = 0;
        buf[3] = (uint8_t) (len >> 8);
        buf[4] = (uint8_t) len;
        memcpy(buf + 5, host, len);
        return len + 5;
}

/* Exactly A-Z a-z 0-9 - . _ are taken, anywhere in the name. */
static void test_every_byte(void) {
        unsigned taken = 0;

        for (unsigned c = 0; c < 256; c++) {
                uint8_t host[] = { 'a', (uint8_t) c, 'b' }, buf[16];
                char name[SNI_NAME_MAX + 1];
                bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                          (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_';
                size_t n = make_body(buf, host, sizeof host);
                int r = sni_parse(buf, n, name);

                if (!test_record(r == (ok ? 0 : -EINVAL), __FILE__, __LINE__, "byte verdict"))
                        fprintf(stderr, "        byte 0x%02x: got %d\n", c, r);
                if (r == 0) {
                        CHECK_INT_EQ(strlen(name), 3);
                        CHECK_INT_EQ((uint8_t) name[1], c);
                        taken++;
                }
        }
        CHECK_INT_EQ(taken, 26 + 26 + 10 + 3);
}

/* 253 bytes are a host name; longer ones are ignored (""), but a bad byte
 * in them is still refused. */
static void test_length(void) {
        static uint8_t host[70000], buf[70010];

        memset(host, 'a', sizeof host);
        for (size_t i = 1; i < sizeof host; i += 2)
                host[i] = '_';
        for (size_t len = 250; len <= 260; len++) {
                char name[SNI_NAME_MAX + 1];
                size_t n = make_body(buf, host, len);

                CHECK_INT_EQ(sni_parse(buf, n, name), 0);
                CHECK_INT_EQ(strlen(name), len <= SNI_NAME_MAX ? len : 0);
        }
        {
                char name[SNI_NAME_MAX + 1];
                /* The largest list the framing allows: 65535 - 3 bytes of name. */
                size_t len = 65532, n = make_body(buf, host, len);

                CHECK_INT_EQ(sni_parse(buf, n, name), 0);
                CHECK_STR_EQ(name, "");
                host[40000] = '\0';
                CHECK_INT_EQ(sni_parse(buf, make_body(buf, host, len), name), -EINVAL);
                host[40000] = 'a';
        }
}

typedef struct FindSni {
        const unsigned char *data;
        unsigned size;
        unsigned count;
} FindSni;

static int on_ext(void *userdata, unsigned tls_id, const unsigned char *data, unsigned size) {
        FindSni *f = userdata;

        if (tls_id == 0) {
                f->data = data;
                f->size = size;
                f->count++;
        }
        return 0;
}

/* What a real GnuTLS client sends for such names, on both versions. */
static void test_real_clients(void) {
        static const char *const prios[] = {
                "NORMAL:-VERS-ALL:+VERS-TLS1.3",
                "NORMAL:-VERS-ALL:+VERS-TLS1.2",
        };
        static const char *const names[] = { "new_server", "my_api", "a_b.example" };

        for (size_t p = 0; p < ELEMENTSOF(prios); p++)
                for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                        HelloCapture cap = {};
                        FindSni f = {};
                        char name[SNI_NAME_MAX + 1];
                        gnutls_datum_t d;

                        fprintf(stderr, "real client: %s, %s\n", prios[p], names[i]);
                        if (!CHECK(hello_capture(prios[p], NULL, 0, names[i], &cap)))
                                continue;
                        d = (gnutls_datum_t) { cap.msg, (unsigned) cap.len };
                        CHECK(gnutls_ext_raw_parse(&f, on_ext, &d,
                                                   GNUTLS_EXT_RAW_FLAG_TLS_CLIENT_HELLO) >= 0);
                        if (CHECK(f.count == 1)) {
                                CHECK_INT_EQ(sni_parse(f.data, f.size, name), 0);
                                CHECK_STR_EQ(name, names[i]);
                        }
                        free(cap.msg);
                }
}

/* This GnuTLS lets a server session hand extension 0 to tlsgate (src/sni.c
 * explains how); a session without it keeps GnuTLS's own parser. If this
 * fails after a GnuTLS update, names with '_' are refused again. */
static void test_session_takes_over(void) {
        gnutls_session_t s = NULL;
        char name[SNI_NAME_MAX + 1] = NAME_SENTINEL;
        const char *builtin;

        if (!CHECK(gnutls_init(&s, GNUTLS_SERVER) >= 0))
                return;
        builtin = gnutls_ext_get_name2(s, 0, GNUTLS_EXT_MANDATORY);
        CHECK_STR_EQ(builtin, "Server Name Indication");
        sni_session_enable(s);
        CHECK(!streq_ptr(gnutls_ext_get_name2(s, 0, GNUTLS_EXT_MANDATORY), builtin));
        /* No ClientHello yet: no name. */
        sni_session_get(s, name);
        CHECK_STR_EQ(name, "");
        gnutls_deinit(s);

        CHECK(gnutls_init(&s, GNUTLS_SERVER) >= 0);
        strcpy(name, NAME_SENTINEL);
        sni_session_get(s, name);
        CHECK_STR_EQ(name, "");
        gnutls_deinit(s);
}

int main(void) {
        test_bodies();
        test_every_byte();
        test_length();
        test_real_clients();
        test_session_takes_over();
        return test_summary();
}
