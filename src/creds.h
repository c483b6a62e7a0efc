/* SPDX-License-Identifier: MIT */
#pragma once

/* Served credentials. A CertBundle is an immutable, reference-counted chain
 * plus private key; a Creds is the GnuTLS server credential (trust list,
 * certificate retrieval) plus the priority cache built from the options.
 * Sessions take references, so new material can replace the old one while
 * live connections keep what they started with (docs/HACKING.md, "GnuTLS
 * handshake hooks and the ALPN gate"). */

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "authz.h"
#include "config.h"

typedef struct CertBundle {
        atomic_uint n_ref;              /* connections on every thread share bundles */
        gnutls_pcert_st *pcerts;        /* leaf first */
        unsigned n_pcerts;
        gnutls_privkey_t key;
        struct TokenKey *token;         /* set: key is this PKCS#11 key's, only borrowed */
        char *subject;                  /* leaf subject DN, for messages */
        time_t not_before, not_after;   /* leaf validity */
        /* A stapled copy (cert_bundle_with_staple()) borrows pcerts and key
         * from base, which it keeps a reference on; staple.response.data is
         * NULL without a staple (the leaf's OCSP response, src/ocsp.c). */
        struct CertBundle *base;
        gnutls_ocsp_data_st staple;
} CertBundle;

CertBundle *cert_bundle_ref(CertBundle *b);
CertBundle *cert_bundle_unref(CertBundle *b);
DEFINE_TRIVIAL_CLEANUP_FUNC(CertBundle *, cert_bundle_unref);

/* A new bundle serving b's chain and key (shared: it references b's base)
 * with a copy of the DER OCSP response that GnuTLS staples until exptime.
 * The bundle stays immutable: a new staple is a new bundle. */
int cert_bundle_with_staple(CertBundle *b, const gnutls_datum_t *response, time_t exptime,
                            CertBundle **ret);
/* The bundle without a staple that b was made from (b itself if unstapled). */
CertBundle *cert_bundle_base(CertBundle *b);

/* Loads the served certificate from --keystore (PEM chain + key, or
 * PKCS#12 with --storepass) or --cert/--key. On failure returns a negative
 * errno and a malloc'ed message naming the file and the problem. */
int cert_bundle_load(const Config *c, CertBundle **ret, char **ret_error);

typedef struct Creds {
        atomic_uint n_ref;
        gnutls_certificate_credentials_t x509;
        gnutls_priority_t priority;
        gnutls_priority_t priority_probe; /* ACME probes: no session tickets */
        CertBundle *bundle;             /* what normal clients get; NULL until ACME obtained one */
        bool request_client_cert;       /* false with --disable-authentication */
        AccessRules *access;            /* the access rules of this generation (authz_check()) */
        /* --allow-spki-pin, parsed: when there are pins they alone authenticate
         * the client, no chain is verified and nothing is cached. */
        SpkiPin *pins;
        size_t n_pins;
        struct VerifyCache *verified;   /* client chains this trust list and these rules judged */
} Creds;

Creds *creds_ref(Creds *c);
Creds *creds_unref(Creds *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(Creds *, creds_unref);

/* Builds the server credential: trust from --cacert (or the system store),
 * the bundle, and the priority string from --max-tls-version and
 * --cipher-suites. retrieve picks the certificate per session. */
int creds_new(const Config *c, CertBundle *bundle, gnutls_certificate_retrieve_function3 *retrieve,
              Creds **ret, char **ret_error);

/* Replaces the certificate new handshakes get; live sessions keep theirs.
 * Only for a Creds no other thread can see yet: a served one changes with
 * current_creds_set_bundle(). */
void creds_set_bundle(Creds *c, CertBundle *bundle);

/* The credential new handshakes use, shared by the serving threads
 * (--threads): a connection takes its references on the Creds and on its
 * bundle in current_creds_get(), under the same lock the main thread holds
 * to replace either. The main thread, the only writer, may read creds (and
 * creds->bundle) without the lock. */
typedef struct CurrentCreds {
        pthread_mutex_t lock;
        Creds *creds;
} CurrentCreds;

void current_creds_init(CurrentCreds *cur);
/* Drops the reference on the credential. */
void current_creds_done(CurrentCreds *cur);
/* New references on the current credential and its bundle (NULL until ACME
 * obtained one). */
void current_creds_get(CurrentCreds *cur, Creds **ret_creds, CertBundle **ret_bundle);
/* Takes over the caller's reference on c; the old credential is unreferenced. */
void current_creds_replace(CurrentCreds *cur, Creds *c);
/* creds_set_bundle() on the current credential, under the lock. */
void current_creds_set_bundle(CurrentCreds *cur, CertBundle *bundle);

/* Builds a bundle from a PEM chain (leaf first) and a PEM private key. what
 * names the source in error messages. */
int cert_bundle_from_pem(const char *chain, size_t chain_len, const char *key, size_t key_len,
                         const char *what, CertBundle **ret, char **ret_error);

/* The GnuTLS priority string for the options (exposed for unit tests). */
int creds_priority_string(const Config *c, char **ret);

/* Converts a GnuTLS error to a negative errno for the module boundary. */
int errno_from_gnutls(int r);
