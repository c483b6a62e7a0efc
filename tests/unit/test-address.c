/* SPDX-License-Identifier: MIT */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stddef.h>
#include <string.h>
#include <sys/un.h>

#include "address.h"
#include "macro.h"
#include "test-util.h"

static void check_tcp(const char *spec, const char *host, const char *port) {
        Address a = {};
        const char *reason = NULL;
        int r = address_parse(spec, false, &a, &reason);

        if (!CHECK(r == 0))
                fprintf(stderr, "        \"%s\": %d (%s)\n", spec, r, strempty(reason));
        CHECK_INT_EQ(a.kind, ADDRESS_TCP);
        CHECK_STR_EQ(a.spec, spec);
        CHECK_STR_EQ(a.host, host);
        CHECK_STR_EQ(a.port, port);
        CHECK(a.path == NULL);
        address_done(&a);
}

static void check_bad(const char *spec, bool allow_systemd, const char *reason_part) {
        Address a = { .kind = ADDRESS_UNIX };
        const char *reason = NULL;
        int r = address_parse(spec, allow_systemd, &a, &reason);

        if (r != -EINVAL)
                fprintf(stderr, "        \"%s\" was accepted\n", spec);
        CHECK_INT_EQ(r, -EINVAL);
        CHECK_CONTAINS(reason, reason_part);
        /* ret untouched on failure */
        CHECK(a.kind == ADDRESS_UNIX && !a.spec && !a.host && !a.port && !a.path);
        address_done(&a);
}

static void test_tcp(void) {
        check_tcp("localhost:8080", "localhost", "8080");
        check_tcp("127.0.0.1:80", "127.0.0.1", "80");
        check_tcp("0.0.0.0:8443", "0.0.0.0", "8443");
        check_tcp(":8443", "", "8443");
        check_tcp("example.com:443", "example.com", "443");
        check_tcp("my_host-1.internal:1", "my_host-1.internal", "1");
        check_tcp("[::1]:8443", "::1", "8443");
        check_tcp("[::]:443", "::", "443");
        check_tcp("[2001:db8::1]:65535", "2001:db8::1", "65535");
        check_tcp("[::ffff:127.0.0.1]:80", "::ffff:127.0.0.1", "80");
        check_tcp("[fe80::1%eth0]:80", "fe80::1%eth0", "80");
        check_tcp("localhost:0", "localhost", "0");
        check_tcp("localhost:08080", "localhost", "8080"); /* normalized */
}

static void test_tcp_invalid(void) {
        check_bad("", false, "empty");
        check_bad("localhost", false, "missing port");
        check_bad("localhost:", false, "missing port");
        check_bad("localhost:http", false, "number");
        check_bad("localhost:80a", false, "number");
        check_bad("localhost:-1", false, "number");
        check_bad("localhost:+80", false, "number");
        check_bad("localhost: 80", false, "number");
        check_bad("localhost:65536", false, "range");
        check_bad("localhost:99999999999999999999", false, "range");
        check_bad("::1:80", false, "brackets");
        check_bad("::1", false, "brackets");
        check_bad("2001:db8::1:443", false, "brackets");
        check_bad("[::1]", false, "missing port");
        check_bad("[::1]:", false, "missing port");
        check_bad("[::1]80", false, "':'");
        check_bad("[::1:80", false, "']'");
        check_bad("[]:80", false, "IPv6");
        check_bad("[localhost]:80", false, "IPv6");
        check_bad("[127.0.0.1]:80", false, "IPv6");
        check_bad("[fe80::1%]:80", false, "IPv6");
        check_bad("local host:80", false, "host");
        check_bad("foo/bar:80", false, "host");
        check_bad("http://localhost:80", false, "host");
        check_bad("fe80::1%eth0:80", false, "brackets");
}

static void test_unix(void) {
        Address a = {};
        char path[200];

        CHECK_INT_EQ(address_parse("unix:/run/app.sock", false, &a, NULL), 0);
        CHECK_INT_EQ(a.kind, ADDRESS_UNIX);
        CHECK_STR_EQ(a.path, "/run/app.sock");
        CHECK_STR_EQ(a.spec, "unix:/run/app.sock");
        CHECK(a.host == NULL && a.port == NULL);
        address_done(&a);
        CHECK(a.spec == NULL && a.path == NULL);

        CHECK_INT_EQ(address_parse("unix:relative.sock", true, &a, NULL), 0);
        CHECK_STR_EQ(a.path, "relative.sock");
        address_done(&a);

        /* sun_path holds 108 bytes including the terminator. */
        memset(path, 'a', sizeof(path));
        memcpy(path, "unix:", 5);
        path[5 + 107] = '\0';
        CHECK_INT_EQ(address_parse(path, false, &a, NULL), 0);
        CHECK_INT_EQ(strlen(a.path), 107);
        address_done(&a);

        path[5 + 107] = 'a';
        path[5 + 108] = '\0';
        check_bad(path, false, "too long");
        check_bad("unix:", false, "empty");
}

static void test_systemd(void) {
        Address a = {};
        char name[300];

        CHECK_INT_EQ(address_parse("systemd:tlsgate", true, &a, NULL), 0);
        CHECK_INT_EQ(a.kind, ADDRESS_SYSTEMD);
        CHECK_STR_EQ(a.path, "tlsgate");
        CHECK(a.host == NULL && a.port == NULL);
        address_done(&a);

        CHECK_INT_EQ(address_parse("systemd:with space~", true, &a, NULL), 0);
        CHECK_STR_EQ(a.path, "with space~");
        address_done(&a);

        check_bad("systemd:tlsgate", false, "--listen");
        check_bad("systemd:", true, "socket name");
        check_bad("systemd:a:b", true, "socket name");
        check_bad("systemd:tab\there", true, "socket name");
        check_bad("systemd:caf\xc3\xa9", true, "socket name");

        memset(name, 'n', sizeof(name));
        memcpy(name, "systemd:", 8);
        name[8 + 255] = '\0';
        CHECK_INT_EQ(address_parse(name, true, &a, NULL), 0);
        CHECK_INT_EQ(strlen(a.path), 255);
        address_done(&a);
        name[8 + 255] = 'n';
        name[8 + 256] = '\0';
        check_bad(name, true, "socket name");
}

static void test_local_target(void) {
        CHECK(address_is_local_target("unix:/run/x.sock"));
        CHECK(address_is_local_target("127.0.0.1:8080"));
        CHECK(address_is_local_target("[::1]:8080"));
        CHECK(address_is_local_target("localhost:8080"));

        CHECK(!address_is_local_target("127.0.0.2:8080"));
        CHECK(!address_is_local_target("localhost.example.com:80"));
        CHECK(!address_is_local_target("10.0.0.1:80"));
        CHECK(!address_is_local_target("[::2]:80"));
        CHECK(!address_is_local_target("[::1]80"));
        CHECK(!address_is_local_target("systemd:foo"));
        CHECK(!address_is_local_target(":8080"));
        CHECK(!address_is_local_target("LOCALHOST:80"));
        CHECK(!address_is_local_target(""));
        CHECK(!address_is_local_target(NULL));
}

static void test_sockaddr_format(void) {
        struct sockaddr_in in = { .sin_family = AF_INET, .sin_port = htons(443) };
        struct sockaddr_in6 in6 = { .sin6_family = AF_INET6, .sin6_port = htons(8443) };
        struct sockaddr_un un = { .sun_family = AF_UNIX };
        char buf[128];

        sockaddr_format((struct sockaddr *) &in, sizeof in, buf, sizeof buf);
        CHECK_STR_EQ(buf, "0.0.0.0:443");
        sockaddr_format((struct sockaddr *) &in6, sizeof in6, buf, sizeof buf);
        CHECK_STR_EQ(buf, "[::]:8443");
        CHECK(inet_pton(AF_INET6, "2001:db8::1", &in6.sin6_addr) == 1);
        sockaddr_format((struct sockaddr *) &in6, sizeof in6, buf, sizeof buf);
        CHECK_STR_EQ(buf, "[2001:db8::1]:8443");
        /* A dual-stack socket's IPv4 peer reads as IPv4. */
        CHECK(inet_pton(AF_INET6, "::ffff:192.0.2.7", &in6.sin6_addr) == 1);
        sockaddr_format((struct sockaddr *) &in6, sizeof in6, buf, sizeof buf);
        CHECK_STR_EQ(buf, "192.0.2.7:8443");
        strcpy(un.sun_path, "/run/tlsgate.sock");
        sockaddr_format((struct sockaddr *) &un,
                        offsetof(struct sockaddr_un, sun_path) + strlen(un.sun_path) + 1, buf,
                        sizeof buf);
        CHECK_STR_EQ(buf, "unix:/run/tlsgate.sock");
        sockaddr_format((struct sockaddr *) &un, sizeof(sa_family_t), buf, sizeof buf);
        CHECK_STR_EQ(buf, "unix:@");
}

int main(void) {
        test_tcp();
        test_tcp_invalid();
        test_unix();
        test_systemd();
        test_local_target();
        test_sockaddr_format();
        return test_summary();
}
