/* SPDX-License-Identifier: MIT */
/* PROXY protocol v2 headers: exact bytes, computed by hand from HAProxy's
 * proxy-protocol.txt section 2.2, for one case per family (TCP4 conn, TCP6
 * tls, UNIX tls-full); what each mode leaves out; address normalisation
 * (IPv4-mapped, mixed, unsupported); the 16-bit bounds; the parser on every
 * truncation and on broken input, and round trips. */

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/un.h>

#include "macro.h"
#include "proxy-protocol.h"
#include "test-util.h"

#define SIG 0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A

static struct sockaddr_in in4(const char *ip, uint16_t port) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
        if (inet_pton(AF_INET, ip, &a.sin_addr) != 1)
                abort();
        return a;
}

static struct sockaddr_in6 in6(const char *ip, uint16_t port) {
        struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_port = htons(port) };
        if (inet_pton(AF_INET6, ip, &a.sin6_addr) != 1)
                abort();
        return a;
}

/* A unix address as getsockname() returns it: the path and its NUL. */
static socklen_t un(struct sockaddr_un *a, const char *path, size_t path_len) {
        *a = (struct sockaddr_un) { .sun_family = AF_UNIX };
        memcpy(a->sun_path, path, path_len);
        return (socklen_t) (offsetof(struct sockaddr_un, sun_path) + path_len);
}

#define SA(x) ((const struct sockaddr *) &(x))

static bool check_bytes(const uint8_t *got, size_t got_len, const uint8_t *want, size_t want_len,
                        const char *what, int line) {
        bool ok = got_len == want_len && memcmp(got, want, want_len) == 0;

        test_record(ok, __FILE__, line, what);
        if (!ok) {
                size_t i = 0;
                while (i < got_len && i < want_len && got[i] == want[i])
                        i++;
                fprintf(stderr, "        length %zu (expected %zu), first difference at byte %zu\n",
                        got_len, want_len, i);
        }
        return ok;
}
#define CHECK_BYTES(got, got_len, want, want_len) \
        check_bytes(got, got_len, want, want_len, #got " == " #want, __LINE__)

/* Writes the header and checks size() agrees; returns its length or 0. */
static size_t build(const ProxyInfo *info, uint8_t *buf, size_t size) {
        size_t len = 0, want = 0;
        int r;

        r = proxy_v2_header_size(info, &want);
        CHECK_INT_EQ(r, 0);
        r = proxy_v2_header(info, buf, size, &len);
        CHECK_INT_EQ(r, 0);
        CHECK_U64_EQ(len, want);
        return r < 0 ? 0 : len;
}

static void test_modes(void) {
        ProxyMode m = PROXY_MODE_OFF;

        CHECK_INT_EQ(proxy_mode_from_string("conn", &m), 0);
        CHECK_INT_EQ(m, PROXY_MODE_CONN);
        CHECK_INT_EQ(proxy_mode_from_string("tls", &m), 0);
        CHECK_INT_EQ(m, PROXY_MODE_TLS);
        CHECK_INT_EQ(proxy_mode_from_string("tls-full", &m), 0);
        CHECK_INT_EQ(m, PROXY_MODE_TLS_FULL);
        CHECK_INT_EQ(proxy_mode_from_string("off", &m), -EINVAL);
        CHECK_INT_EQ(proxy_mode_from_string("", &m), -EINVAL);
        CHECK_INT_EQ(proxy_mode_from_string("TLS", &m), -EINVAL);
        CHECK_INT_EQ(proxy_mode_from_string("tls-ful", &m), -EINVAL);
        CHECK_INT_EQ(m, PROXY_MODE_TLS_FULL);
        CHECK_STR_EQ(proxy_mode_to_string(PROXY_MODE_TLS_FULL), "tls-full");
        CHECK(proxy_mode_to_string(PROXY_MODE_OFF) == NULL);
        CHECK(proxy_mode_to_string(_PROXY_MODE_MAX) == NULL);
}

/* TCP4, mode conn: 192.0.2.1:51234 -> 127.0.0.1:443. */
static void test_tcp4_conn(void) {
        static const uint8_t want[] = {
                SIG, 0x21, 0x11, 0x00, 0x0C,            /* PROXY, TCP4, 12 bytes */
                0xC0, 0x00, 0x02, 0x01,                 /* 192.0.2.1 */
                0x7F, 0x00, 0x00, 0x01,                 /* 127.0.0.1 */
                0xC8, 0x22,                             /* 51234 */
                0x01, 0xBB,                             /* 443 */
        };
        struct sockaddr_in src = in4("192.0.2.1", 51234), dst = in4("127.0.0.1", 443);
        const uint8_t cert[] = { 0x30, 0x00 };
        ProxyInfo info = {
                .mode = PROXY_MODE_CONN,
                .src = SA(src), .src_len = sizeof src, .dst = SA(dst), .dst_len = sizeof dst,
                /* all ignored in conn mode */
                .alpn = (const uint8_t *) "h2", .alpn_len = 2, .authority = "a.example",
                .tls_version = "TLS 1.3", .cert_conn = true, .cert_sess = true,
                .cn = "client", .cert = cert, .cert_len = sizeof cert,
        };
        uint8_t buf[256];
        size_t len;

        len = build(&info, buf, sizeof buf);
        CHECK_BYTES(buf, len, want, sizeof want);

        /* Exactly big enough is enough; one byte less is -ENOBUFS. */
        CHECK_INT_EQ(proxy_v2_header(&info, buf, sizeof want, &len), 0);
        CHECK_INT_EQ(proxy_v2_header(&info, buf, sizeof want - 1, &len), -ENOBUFS);
        CHECK_INT_EQ(proxy_v2_header(&info, NULL, 0, &len), -ENOBUFS);

        /* IPv4 clients of a dual-stack listener arrive as ::ffff:a.b.c.d on
         * both ends: the same TCP4 header. */
        {
                struct sockaddr_in6 msrc = in6("::ffff:192.0.2.1", 51234),
                                    mdst = in6("::ffff:127.0.0.1", 443);
                info.src = SA(msrc), info.src_len = sizeof msrc;
                info.dst = SA(mdst), info.dst_len = sizeof mdst;
                len = build(&info, buf, sizeof buf);
                CHECK_BYTES(buf, len, want, sizeof want);
        }
}

/* TCP6, mode tls: [2001:db8::1]:40000 -> [::1]:8443, ALPN h2, SNI
 * a.example, TLS 1.3, a client certificate: neither its sub-TLVs nor its
 * client flags in this mode, only CLIENT_SSL (as Ghostunnel). */
static void test_tcp6_tls(void) {
        static const uint8_t want[] = {
                SIG, 0x21, 0x21, 0x00, 0x47,            /* PROXY, TCP6, 71 bytes */
                0x20, 0x01, 0x0D, 0xB8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, /* 2001:db8::1 */
                0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,             /* ::1 */
                0x9C, 0x40,                             /* 40000 */
                0x20, 0xFB,                             /* 8443 */
                0x01, 0x00, 0x02, 'h', '2',             /* ALPN */
                0x02, 0x00, 0x09, 'a', '.', 'e', 'x', 'a', 'm', 'p', 'l', 'e', /* AUTHORITY */
                0x20, 0x00, 0x0F,                       /* SSL, 15 bytes */
                0x01,                                   /* CLIENT_SSL alone */
                0x00, 0x00, 0x00, 0x00,                 /* verify: ok */
                0x21, 0x00, 0x07, 'T', 'L', 'S', ' ', '1', '.', '3', /* VERSION */
        };
        struct sockaddr_in6 src = in6("2001:db8::1", 40000), dst = in6("::1", 8443);
        const uint8_t cert[] = { 0x30, 0x00 };
        ProxyInfo info = {
                .mode = PROXY_MODE_TLS,
                .src = SA(src), .src_len = sizeof src, .dst = SA(dst), .dst_len = sizeof dst,
                .alpn = (const uint8_t *) "h2", .alpn_len = 2, .authority = "a.example",
                .tls_version = "TLS 1.3", .cert_conn = true, .cert_sess = true,
                .cn = "client", .cert = cert, .cert_len = sizeof cert, /* tls-full only */
        };
        uint8_t buf[256];
        size_t len;
        ProxyHeader h;

        len = build(&info, buf, sizeof buf);
        CHECK_BYTES(buf, len, want, sizeof want);

        CHECK_INT_EQ(proxy_v2_parse(buf, len, &h), 0);
        CHECK_U64_EQ(h.len, sizeof want);
        CHECK_INT_EQ(h.family, PP2_FAM_TCP6);
        CHECK_INT_EQ(h.command, PP2_CMD_PROXY);
        CHECK(memcmp(h.src_addr, &src.sin6_addr, 16) == 0);
        CHECK(memcmp(h.dst_addr, &dst.sin6_addr, 16) == 0);
        CHECK_INT_EQ(h.src_port, 40000);
        CHECK_INT_EQ(h.dst_port, 8443);
        CHECK_INT_EQ(h.n_tlvs, 3);
        CHECK(h.alpn_len == 2 && memcmp(h.alpn, "h2", 2) == 0);
        CHECK(h.authority_len == 9 && memcmp(h.authority, "a.example", 9) == 0);
        CHECK(h.has_ssl);
        CHECK_INT_EQ(h.ssl_client, PP2_CLIENT_SSL);
        CHECK_INT_EQ(h.ssl_verify, 0);
        CHECK(h.ssl_version_len == 7 && memcmp(h.ssl_version, "TLS 1.3", 7) == 0);
        CHECK(h.ssl_cn == NULL && h.ssl_cert == NULL);

        /* Without ALPN, SNI and client certificate (--disable-authentication):
         * only the SSL TLV, client flag SSL alone. */
        info.alpn = NULL, info.alpn_len = 0;
        info.authority = "";
        info.cert_conn = info.cert_sess = false;
        len = build(&info, buf, sizeof buf);
        CHECK_U64_EQ(len, 16 + 36 + 3 + 5 + 10);
        CHECK_INT_EQ(buf[14], 0);
        CHECK_INT_EQ(buf[15], 36 + 18);
        CHECK_INT_EQ(buf[16 + 36], PP2_TYPE_SSL);
        CHECK_INT_EQ(buf[16 + 36 + 3], PP2_CLIENT_SSL);
        CHECK_INT_EQ(proxy_v2_parse(buf, len, &h), 0);
        CHECK(h.alpn == NULL && h.authority == NULL && h.has_ssl);
        CHECK_INT_EQ(h.n_tlvs, 1);
}

/* The cipher sub-TLV (its IANA name, as Go's tls.CipherSuiteName gives it)
 * after the version, in tls and tls-full; none in conn. */
static void test_cipher(void) {
        static const uint8_t want[] = {
                SIG, 0x21, 0x11, 0x00, 0x37,            /* PROXY, TCP4, 55 bytes */
                0x7F, 0x00, 0x00, 0x01, 0x7F, 0x00, 0x00, 0x01, 0x9C, 0x40, 0x01, 0xBB,
                0x20, 0x00, 0x28,                       /* SSL, 40 bytes */
                0x01, 0x00, 0x00, 0x00, 0x00,           /* CLIENT_SSL, verify ok */
                0x21, 0x00, 0x07, 'T', 'L', 'S', ' ', '1', '.', '3', /* VERSION */
                0x23, 0x00, 0x16, 'T', 'L', 'S', '_', 'A', 'E', 'S', '_', '1', '2', '8', '_',
                'G', 'C', 'M', '_', 'S', 'H', 'A', '2', '5', '6', /* CIPHER */
        };
        struct sockaddr_in src = in4("127.0.0.1", 40000), dst = in4("127.0.0.1", 443);
        ProxyInfo info = {
                .mode = PROXY_MODE_TLS,
                .src = SA(src), .src_len = sizeof src, .dst = SA(dst), .dst_len = sizeof dst,
                .tls_version = "TLS 1.3", .cipher = "TLS_AES_128_GCM_SHA256",
        };
        uint8_t buf[256];
        size_t len;
        ProxyHeader h;

        len = build(&info, buf, sizeof buf);
        CHECK_BYTES(buf, len, want, sizeof want);
        CHECK_INT_EQ(proxy_v2_parse(buf, len, &h), 0);
        CHECK(h.ssl_cipher_len == 22 && memcmp(h.ssl_cipher, "TLS_AES_128_GCM_SHA256", 22) == 0);
        CHECK(h.ssl_version_len == 7 && h.ssl_cn == NULL && h.ssl_cert == NULL);

        /* tls-full: version, cipher, then CN. */
        info.mode = PROXY_MODE_TLS_FULL;
        info.cn = "c";
        info.cert_conn = info.cert_sess = true;
        len = build(&info, buf, sizeof buf);
        CHECK_U64_EQ(len, sizeof want + 4);
        CHECK_INT_EQ(buf[sizeof want], PP2_SUBTYPE_SSL_CN);
        CHECK_INT_EQ(proxy_v2_parse(buf, len, &h), 0);
        CHECK(h.ssl_cipher_len == 22 && h.ssl_cn_len == 1);

        /* conn: no TLVs at all. */
        info.mode = PROXY_MODE_CONN;
        len = build(&info, buf, sizeof buf);
        CHECK_U64_EQ(len, 16 + 12);
}

/* UNIX, mode tls-full: an unnamed client socket -> /run/tg.sock, TLS 1.2,
 * CN "client" and a (toy) DER certificate, no ALPN, no SNI. */
static void test_unix_tls_full(void) {
        static const uint8_t head[] = {
                SIG, 0x21, 0x31, 0x00, 0xFB,            /* PROXY, UNIX stream, 251 bytes */
        };
        static const uint8_t tlvs[] = {
                0x20, 0x00, 0x20,                       /* SSL, 32 bytes */
                0x07, 0x00, 0x00, 0x00, 0x00,
                0x21, 0x00, 0x07, 'T', 'L', 'S', ' ', '1', '.', '2', /* VERSION */
                0x22, 0x00, 0x06, 'c', 'l', 'i', 'e', 'n', 't',      /* CN */
                0x28, 0x00, 0x05, 0x30, 0x03, 0x02, 0x01, 0x05,      /* CLIENT_CERT */
        };
        const uint8_t cert[] = { 0x30, 0x03, 0x02, 0x01, 0x05 };
        uint8_t want[sizeof head + 216 + sizeof tlvs] = {}, buf[512];
        struct sockaddr_un src, dst;
        socklen_t src_len = un(&src, "", 0), dst_len = un(&dst, "/run/tg.sock", 13);
        ProxyInfo info = {
                .mode = PROXY_MODE_TLS_FULL,
                .src = SA(src), .src_len = src_len, .dst = SA(dst), .dst_len = dst_len,
                .tls_version = "TLS 1.2", .cert_conn = true, .cert_sess = true,
                .cn = "client", .cert = cert, .cert_len = sizeof cert,
        };
        size_t len;
        ProxyHeader h;

        memcpy(want, head, sizeof head);
        /* source path: 108 zero bytes; destination: the path, zero-padded */
        memcpy(want + sizeof head + 108, "/run/tg.sock", 12);
        memcpy(want + sizeof head + 216, tlvs, sizeof tlvs);

        len = build(&info, buf, sizeof buf);
        CHECK_BYTES(buf, len, want, sizeof want);

        CHECK_INT_EQ(proxy_v2_parse(buf, len, &h), 0);
        CHECK_INT_EQ(h.family, PP2_FAM_UNIX_STREAM);
        CHECK(h.src_path && h.src_path[0] == 0);
        CHECK(h.dst_path && streq((const char *) h.dst_path, "/run/tg.sock"));
        CHECK(h.ssl_cn_len == 6 && memcmp(h.ssl_cn, "client", 6) == 0);
        CHECK(h.ssl_cert_len == sizeof cert && memcmp(h.ssl_cert, cert, sizeof cert) == 0);
        CHECK_INT_EQ(h.ssl_client, 0x07);

        /* An abstract address keeps its leading NUL; a path longer than the
         * 108 bytes cannot come from the kernel and is cut at 108. */
        {
                struct sockaddr_un a;
                socklen_t a_len = un(&a, "\0tg", 3);
                info.src = SA(a), info.src_len = a_len;
                len = build(&info, buf, sizeof buf);
                CHECK(len > 0 && memcmp(buf + 16, "\0tg\0", 4) == 0);
                info.src_len = sizeof(struct sockaddr_un) + 20;
                CHECK_INT_EQ(proxy_v2_header_size(&info, &len), 0);
        }

        /* No CN in the certificate: no CN sub-TLV; the certificate still goes. */
        info.src = SA(src), info.src_len = src_len;
        info.cn = NULL;
        len = build(&info, buf, sizeof buf);
        CHECK_U64_EQ(len, sizeof want - 9);
        CHECK_INT_EQ(proxy_v2_parse(buf, len, &h), 0);
        CHECK(h.ssl_cn == NULL && h.ssl_cert_len == sizeof cert);
}

static void test_unspec(void) {
        struct sockaddr_in ip = in4("127.0.0.1", 1);
        struct sockaddr_un u;
        socklen_t u_len = un(&u, "/x", 3);
        struct sockaddr_storage other = { .ss_family = AF_PACKET };
        ProxyInfo info = { .mode = PROXY_MODE_CONN };
        uint8_t buf[64];
        size_t len;
        ProxyHeader h;

        /* No addresses, a unix/IP mix, an unknown family, a short length. */
        len = build(&info, buf, sizeof buf);
        CHECK_U64_EQ(len, 16);
        CHECK_INT_EQ(buf[13], PP2_FAM_UNSPEC);
        CHECK_INT_EQ(buf[15], 0);
        info = (ProxyInfo) { .mode = PROXY_MODE_CONN, .src = SA(u), .src_len = u_len,
                             .dst = SA(ip), .dst_len = sizeof ip };
        CHECK_U64_EQ(build(&info, buf, sizeof buf), 16);
        info.src = SA(other), info.src_len = sizeof other;
        CHECK_U64_EQ(build(&info, buf, sizeof buf), 16);
        info.src = SA(ip), info.src_len = sizeof ip - 1;
        CHECK_U64_EQ(build(&info, buf, sizeof buf), 16);
        CHECK_INT_EQ(buf[13], PP2_FAM_UNSPEC);
        CHECK_INT_EQ(proxy_v2_parse(buf, 16, &h), 0);
        CHECK_INT_EQ(h.family, PP2_FAM_UNSPEC);

        /* An IPv4 and a (non-mapped) IPv6 end: TCP6, the IPv4 one mapped. */
        {
                struct sockaddr_in6 v6 = in6("::1", 2);
                static const uint8_t mapped[16] = { [10] = 0xff, [11] = 0xff, 127, 0, 0, 1 };
                info.src = SA(ip), info.src_len = sizeof ip;
                info.dst = SA(v6), info.dst_len = sizeof v6;
                len = build(&info, buf, sizeof buf);
                CHECK_INT_EQ(buf[13], PP2_FAM_TCP6);
                CHECK(memcmp(buf + 16, mapped, 16) == 0);
                CHECK_INT_EQ(proxy_v2_parse(buf, len, &h), 0);
                CHECK_INT_EQ(h.src_port, 1);
                CHECK_INT_EQ(h.dst_port, 2);
        }

        /* Mode off is not a header. */
        info.mode = PROXY_MODE_OFF;
        CHECK_INT_EQ(proxy_v2_header_size(&info, &len), -EINVAL);
        CHECK_INT_EQ(proxy_v2_header(&info, buf, sizeof buf, &len), -EINVAL);
        info.mode = _PROXY_MODE_MAX;
        CHECK_INT_EQ(proxy_v2_header_size(&info, &len), -EINVAL);
        CHECK_INT_EQ(proxy_v2_header_size(NULL, &len), -EINVAL);
}

/* The length field counts everything after byte 16 and has 16 bits: with
 * TCP4 and only a certificate, 12 + 3 (SSL) + 5 + 3 (CLIENT_CERT) + cert
 * <= 65535, so the largest certificate is 65512 bytes. Beyond that the
 * header is refused, never cut. Headers bigger than the 16 KiB pipe buffer
 * are fine. */
static void test_bounds(void) {
        struct sockaddr_in src = in4("10.0.0.1", 1), dst = in4("10.0.0.2", 2);
        uint8_t *cert = calloc(1, 70000), *buf = malloc(70000);
        ProxyInfo info = {
                .mode = PROXY_MODE_TLS_FULL,
                .src = SA(src), .src_len = sizeof src, .dst = SA(dst), .dst_len = sizeof dst,
                .cert = cert,
        };
        size_t len = 0;
        ProxyHeader h;

        if (!cert || !buf)
                abort();
        info.cert_len = 65512;
        CHECK_U64_EQ(build(&info, buf, 70000), 16 + 65535);
        CHECK_INT_EQ(buf[14], 0xFF);
        CHECK_INT_EQ(buf[15], 0xFF);
        CHECK_INT_EQ(proxy_v2_parse(buf, 16 + 65535, &h), 0);
        CHECK_U64_EQ(h.ssl_cert_len, 65512);

        info.cert_len = 65513;
        CHECK_INT_EQ(proxy_v2_header_size(&info, &len), -E2BIG);
        CHECK_INT_EQ(proxy_v2_header(&info, buf, 70000, &len), -E2BIG);
        info.cert_len = SIZE_MAX; /* never read: refused before */
        CHECK_INT_EQ(proxy_v2_header_size(&info, &len), -E2BIG);

        /* The same certificate fits in tls mode, which does not send it. */
        info.mode = PROXY_MODE_TLS;
        CHECK_INT_EQ(proxy_v2_header_size(&info, &len), 0);
        CHECK_U64_EQ(len, 16 + 12 + 3 + 5);

        /* A long SNI, ALPN or CN counts too. */
        info.mode = PROXY_MODE_TLS_FULL;
        info.cert_len = 40000;
        info.alpn = cert, info.alpn_len = 30000;
        CHECK_INT_EQ(proxy_v2_header_size(&info, &len), -E2BIG);
        info.alpn_len = 20000;
        CHECK_U64_EQ(build(&info, buf, 70000), 16 + 12 + 3 + 20000 + 3 + 5 + 3 + 40000);

        /* 20 KiB: larger than one pipe buffer, written whole. */
        info.alpn = NULL, info.alpn_len = 0;
        info.cert_len = 20000;
        CHECK_U64_EQ(build(&info, buf, 70000), 16 + 12 + 3 + 5 + 3 + 20000);

        free(cert);
        free(buf);
}

static void test_parse_errors(void) {
        struct sockaddr_in src = in4("192.0.2.1", 51234), dst = in4("127.0.0.1", 443);
        ProxyInfo info = {
                .mode = PROXY_MODE_TLS,
                .src = SA(src), .src_len = sizeof src, .dst = SA(dst), .dst_len = sizeof dst,
                .authority = "x.example", .tls_version = "TLS 1.3",
        };
        uint8_t buf[256], copy[256];
        size_t len;
        ProxyHeader h;

        len = build(&info, buf, sizeof buf);

        /* Every proper prefix asks for more; the whole header followed by
         * application bytes parses and says where they start. */
        for (size_t i = 0; i < len; i++)
                if (proxy_v2_parse(buf, i, &h) != -EAGAIN) {
                        CHECK_U64_EQ(i, len); /* report the prefix that failed */
                        break;
                }
        memcpy(buf + len, "GET / HTTP/1.0\r\n", 16);
        CHECK_INT_EQ(proxy_v2_parse(buf, len + 16, &h), 0);
        CHECK_U64_EQ(h.len, len);
        CHECK(h.authority_len == 9 && memcmp(h.authority, "x.example", 9) == 0);

        /* A wrong signature is refused at once, even when short. */
        CHECK_INT_EQ(proxy_v2_parse((const uint8_t *) "GET ", 4, &h), -EBADMSG);
        CHECK_INT_EQ(proxy_v2_parse((const uint8_t *) "PROXY TCP4 ", 11, &h), -EBADMSG);

#define MUTATED(offset, value)                                   \
        ({                                                       \
                memcpy(copy, buf, len);                          \
                copy[offset] = (value);                          \
                proxy_v2_parse(copy, len, &h);                   \
        })
        CHECK_INT_EQ(MUTATED(12, 0x11), -EBADMSG);      /* version 1 */
        CHECK_INT_EQ(MUTATED(12, 0x22), -EBADMSG);      /* command 2 */
        CHECK_INT_EQ(MUTATED(12, 0x20), 0);             /* LOCAL */
        CHECK_INT_EQ(h.command, PP2_CMD_LOCAL);
        CHECK_INT_EQ(MUTATED(13, 0x41), -EBADMSG);      /* family 4 */
        CHECK_INT_EQ(MUTATED(13, 0x12), -EBADMSG);      /* UDP over IPv4: not ours */
        CHECK_INT_EQ(MUTATED(16 + 12 + 1, 0x01), -EBADMSG); /* authority runs past the end */
        CHECK_INT_EQ(MUTATED(16 + 12 + 12 + 2, 0x04), -EBADMSG); /* SSL shorter than 5 */
        CHECK_INT_EQ(MUTATED(16 + 12 + 12 + 3 + 5 + 2, 0x08), -EBADMSG); /* VERSION past SSL */
        CHECK_INT_EQ(MUTATED(16 + 12, 0xE0), 0);        /* unknown type: skipped */
        CHECK(h.authority == NULL);
        CHECK_INT_EQ(h.n_tlvs, 2);
#undef MUTATED

        /* A stray byte after the last TLV is a truncated TLV. */
        memcpy(copy, buf, len);
        copy[15]++;
        copy[len] = 0x01;
        CHECK_INT_EQ(proxy_v2_parse(copy, len + 1, &h), -EBADMSG);
        CHECK_INT_EQ(proxy_v2_parse(NULL, 0, &h), -EAGAIN);

        /* An address block shorter than the family needs. */
        info.mode = PROXY_MODE_CONN;
        len = build(&info, buf, sizeof buf);
        CHECK_U64_EQ(len, 16 + 12);
        buf[13] = PP2_FAM_TCP6;
        CHECK_INT_EQ(proxy_v2_parse(buf, len, &h), -EBADMSG);
        buf[13] = PP2_FAM_UNIX_STREAM;
        CHECK_INT_EQ(proxy_v2_parse(buf, len, &h), -EBADMSG);
}

int main(void) {
        test_modes();
        test_tcp4_conn();
        test_tcp6_tls();
        test_cipher();
        test_unix_tls_full();
        test_unspec();
        test_bounds();
        test_parse_errors();
        return test_summary();
}
