/* SPDX-License-Identifier: MIT */
/* sni_parse() on arbitrary server_name extension bodies. Besides "no
 * crash", every input is checked against a second walk written here from
 * RFC 6066 section 3, which first splits the list into entries and then
 * judges them:
 *   - the same verdict (name, ignored, malformed, bad byte, two names);
 *   - on success the name is the host_name entry's bytes, NUL-terminated,
 *     at most SNI_NAME_MAX long, of A-Z a-z 0-9 - . _ only;
 *   - the output buffer is untouched on failure. */

#include <errno.h>

#include "fuzz-util.h"
#include "sni.h"

typedef struct Entry {
        uint8_t type;
        const uint8_t *name;
        size_t len;
} Entry;

#define ENTRIES_MAX 40000 /* 65535 / 3: more cannot fit any list */

static unsigned u16(const uint8_t *p) {
        return (unsigned) p[0] << 8 | p[1];
}

static int ref_parse(const uint8_t *d, size_t n, const uint8_t **ret_host, size_t *ret_len) {
        static Entry e[ENTRIES_MAX];
        size_t count = 0, hosts = 0, host = 0;

        if (n < 4 || u16(d) != n - 2)
                return -EBADMSG;
        for (size_t p = 2; p < n; count++) {
                if (n - p < 3 || count == ENTRIES_MAX)
                        return -EBADMSG;
                e[count] = (Entry) { d[p], d + p + 3, u16(d + p + 1) };
                if (e[count].len == 0 || e[count].len > n - p - 3)
                        return -EBADMSG;
                p += 3 + e[count].len;
        }
        for (size_t i = 0; i < count; i++)
                if (e[i].type == 0 && hosts++ == 0)
                        host = i;
        if (hosts > 1)
                return -ENOTUNIQ;
        if (hosts == 0) {
                *ret_host = NULL, *ret_len = 0;
                return 0;
        }
        for (size_t i = 0; i < e[host].len; i++)
                if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._",
                            e[host].name[i]) || e[host].name[i] == 0)
                        return -EINVAL;
        *ret_host = e[host].name;
        *ret_len = e[host].len;
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char name[SNI_NAME_MAX + 1];
        const uint8_t *host = NULL;
        size_t host_len = 0;
        int r, ref;

        memset(name, 0x5a, sizeof name);
        r = sni_parse(data, size, name);
        ref = ref_parse(data, size, &host, &host_len);
        CHECK(r == ref);
        if (r < 0) {
                for (size_t i = 0; i < sizeof name; i++)
                        CHECK(name[i] == 0x5a);
                return 0;
        }
        CHECK(memchr(name, 0, sizeof name));
        if (!host || host_len > SNI_NAME_MAX) {
                CHECK(name[0] == '\0');
                return 0;
        }
        CHECK(strlen(name) == host_len);
        CHECK(memcmp(name, host, host_len) == 0);
        return 0;
}
