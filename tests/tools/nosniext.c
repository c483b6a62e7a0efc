/* SPDX-License-Identifier: MIT */
/* LD_PRELOAD shim for tests/integration/test_sni.py: a GnuTLS that does not
 * let tlsgate take the server_name extension over (src/sni.c), as a future
 * GnuTLS that checks extension ids might be. gnutls_session_ext_register()
 * refuses every id above 0xffff with GNUTLS_E_ALREADY_REGISTERED, what
 * GnuTLS answers for its documented override of server_name; other calls
 * go to GnuTLS. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <gnutls/gnutls.h>

typedef int (*register_fn)(gnutls_session_t, const char *, int, gnutls_ext_parse_type_t,
                           gnutls_ext_recv_func, gnutls_ext_send_func,
                           gnutls_ext_deinit_data_func, gnutls_ext_pack_func,
                           gnutls_ext_unpack_func, unsigned);

int gnutls_session_ext_register(gnutls_session_t session, const char *name, int id,
                                gnutls_ext_parse_type_t parse_point, gnutls_ext_recv_func recv,
                                gnutls_ext_send_func send, gnutls_ext_deinit_data_func deinit,
                                gnutls_ext_pack_func pack, gnutls_ext_unpack_func unpack,
                                unsigned flags) {
        register_fn real;

        if (id < 0 || id > 0xffff)
                return GNUTLS_E_ALREADY_REGISTERED;
        real = (register_fn) dlsym(RTLD_NEXT, "gnutls_session_ext_register");
        if (!real)
                return GNUTLS_E_INTERNAL_ERROR;
        return real(session, name, id, parse_point, recv, send, deinit, pack, unpack, flags);
}
