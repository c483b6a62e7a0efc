/* SPDX-License-Identifier: MIT */
#include <gnutls/pkcs12.h>
#include <gnutls/x509.h>
#include <stdio.h>

#include "creds.h"
#include "log.h"
#include "pkcs11.h"
#include "strv.h"
#include "util.h"
#include "verify-cache.h"

/* Distinct client chains remembered per credential generation: a few
 * hundred KiB at most, more clients than most mTLS services have. */
#define VERIFY_CACHE_SLOTS 1024U

int errno_from_gnutls(int r) {
        switch (r) {
        case GNUTLS_E_SUCCESS:
                return 0;
        case GNUTLS_E_MEMORY_ERROR:
                return -ENOMEM;
        case GNUTLS_E_FILE_ERROR:
                return -EIO;
        case GNUTLS_E_AGAIN:
        case GNUTLS_E_INTERRUPTED:
                return -EAGAIN;
        default:
                return -EINVAL;
        }
}

static void pcerts_free(gnutls_pcert_st *p, unsigned n) {
        for (unsigned i = 0; i < n; i++)
                gnutls_pcert_deinit(&p[i]);
        free(p);
}

/* Reference counts are shared by the serving threads (--threads): taking
 * one needs no ordering; the last drop must see every other thread's use
 * of the object before it frees it. */
CertBundle *cert_bundle_ref(CertBundle *b) {
        if (b)
                atomic_fetch_add_explicit(&b->n_ref, 1, memory_order_relaxed);
        return b;
}

CertBundle *cert_bundle_unref(CertBundle *b) {
        if (!b || atomic_fetch_sub_explicit(&b->n_ref, 1, memory_order_acq_rel) > 1)
                return NULL;
        if (b->base)
                cert_bundle_unref(b->base); /* pcerts and key are the base's */
        else {
                pcerts_free(b->pcerts, b->n_pcerts);
                if (b->token)
                        token_key_unref(b->token);
                else
                        gnutls_privkey_deinit(b->key);
        }
        free(b->staple.response.data);
        free(b->subject);
        free(b);
        return NULL;
}

CertBundle *cert_bundle_base(CertBundle *b) {
        return b && b->base ? b->base : b;
}

int cert_bundle_with_staple(CertBundle *b, const gnutls_datum_t *response, time_t exptime,
                            CertBundle **ret) {
        _cleanup_(cert_bundle_unrefp) CertBundle *s = NULL;
        CertBundle *base = cert_bundle_base(b);

        if (!response || response->size == 0)
                return -EINVAL;
        s = calloc(1, sizeof *s);
        if (!s)
                return -ENOMEM;
        s->n_ref = 1;
        s->base = cert_bundle_ref(base);
        s->pcerts = base->pcerts;
        s->n_pcerts = base->n_pcerts;
        s->key = base->key;
        s->not_before = base->not_before;
        s->not_after = base->not_after;
        if (base->subject && !(s->subject = strdup(base->subject)))
                return -ENOMEM;
        s->staple.response.data = malloc(response->size);
        if (!s->staple.response.data)
                return -ENOMEM;
        memcpy(s->staple.response.data, response->data, response->size);
        s->staple.response.size = response->size;
        s->staple.exptime = exptime;
        *ret = TAKE_PTR(s);
        return 0;
}

/* Takes ownership of crts (array and elements) and key on success and
 * failure alike. Checks that the key belongs to the leaf; key_path names
 * the key's file when it is not the certificate's (what). */
static int bundle_from_x509(gnutls_x509_crt_t *crts, unsigned n_crts, gnutls_x509_privkey_t xkey,
                            const char *what, const char *key_path, CertBundle **ret,
                            char **ret_error) {
        _cleanup_(cert_bundle_unrefp) CertBundle *b = NULL;
        gnutls_datum_t dn = {};
        int r;

        b = calloc(1, sizeof *b);
        if (!b) {
                r = -ENOMEM;
                goto finish;
        }
        b->n_ref = 1;
        if (n_crts == 0) {
                r = error_set(ret_error, -EINVAL, _("%s: no certificate found"), what);
                goto finish;
        }
        if (!xkey) {
                r = error_set(ret_error, -EINVAL, _("%s: no private key found"), what);
                goto finish;
        }

        b->pcerts = calloc(n_crts, sizeof *b->pcerts);
        if (!b->pcerts) {
                r = -ENOMEM;
                goto finish;
        }
        r = gnutls_pcert_import_x509_list(b->pcerts, crts, &n_crts, 0);
        if (r < 0) {
                r = error_set(ret_error, -EINVAL, _("%s: cannot use certificate chain: %s"), what,
                         gnutls_strerror(r));
                goto finish;
        }
        b->n_pcerts = n_crts;

        r = gnutls_privkey_init(&b->key);
        if (r >= 0)
                r = gnutls_privkey_import_x509(b->key, xkey, GNUTLS_PRIVKEY_IMPORT_COPY);
        if (r < 0) {
                r = error_set(ret_error, -EINVAL, _("%s: cannot use private key: %s"), what,
                         gnutls_strerror(r));
                goto finish;
        }

        /* The key must match the leaf, or every handshake would fail later. */
        {
                unsigned char kid1[64], kid2[64];
                size_t l1 = sizeof kid1, l2 = sizeof kid2;
                if (gnutls_x509_crt_get_key_id(crts[0], GNUTLS_KEYID_USE_SHA256, kid1, &l1) < 0 ||
                    gnutls_x509_privkey_get_key_id(xkey, GNUTLS_KEYID_USE_SHA256, kid2, &l2) < 0 ||
                    l1 != l2 || memcmp(kid1, kid2, l1) != 0) {
                        r = key_path ?
                                error_set(ret_error, -EINVAL,
                                          _("%s: the private key in %s does not match the "
                                            "certificate"), what, key_path) :
                                error_set(ret_error, -EINVAL,
                                          _("%s: the private key does not match the certificate"),
                                          what);
                        goto finish;
                }
        }

        if (gnutls_x509_crt_get_dn3(crts[0], &dn, 0) >= 0) {
                b->subject = strndup((const char *) dn.data, dn.size);
                gnutls_free(dn.data);
        }
        b->not_before = gnutls_x509_crt_get_activation_time(crts[0]);
        b->not_after = gnutls_x509_crt_get_expiration_time(crts[0]);
        *ret = TAKE_PTR(b);
        r = 0;
finish:
        for (unsigned i = 0; i < n_crts; i++)
                gnutls_x509_crt_deinit(crts[i]);
        gnutls_free(crts);
        gnutls_x509_privkey_deinit(xkey);
        return r;
}

/* Not gnutls_load_file(): its stdio buffer is freed holding the key. */
static int read_file(const char *path, const char *flag, gnutls_datum_t *ret, char **ret_error) {
        char *data;
        size_t size;
        int r;

        r = read_file_erasable(path, 64U * 1024U * 1024U, &data, &size);
        if (r < 0)
                return error_set(ret_error, r, _("%s %s: cannot read: %s"), flag, path, strerror(-r));
        *ret = (gnutls_datum_t) { .data = (unsigned char *) data, .size = (unsigned) size };
        return 0;
}

static bool is_pem(const gnutls_datum_t *d) {
        return d->size >= 10 && memmem(d->data, d->size, "-----BEGIN", 10);
}

static int import_pem_chain(const gnutls_datum_t *d, const char *what, gnutls_x509_crt_t **ret,
                            unsigned *ret_n, char **ret_error) {
        int r = gnutls_x509_crt_list_import2(ret, ret_n, d, GNUTLS_X509_FMT_PEM,
                                             GNUTLS_X509_CRT_LIST_FAIL_IF_UNSORTED);
        if (r == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE || r == GNUTLS_E_BASE64_DECODING_ERROR ||
            r == GNUTLS_E_NO_CERTIFICATE_FOUND) {
                *ret = NULL;
                *ret_n = 0;
                return 0;
        }
        if (r < 0)
                return error_set(ret_error, -EINVAL, _("%s: invalid certificate chain: %s"), what,
                            gnutls_strerror(r));
        return 0;
}

static int import_pem_key(const gnutls_datum_t *d, const char *password, const char *what,
                          gnutls_x509_privkey_t *ret, char **ret_error) {
        gnutls_x509_privkey_t k;
        int r = gnutls_x509_privkey_init(&k);
        if (r < 0)
                return -ENOMEM;
        /* PKCS#8 (encrypted only with a password) or the traditional RSA/EC forms. */
        r = gnutls_x509_privkey_import2(k, d, GNUTLS_X509_FMT_PEM, password,
                                        password ? 0 : GNUTLS_PKCS_PLAIN);
        if (r < 0) {
                gnutls_x509_privkey_deinit(k);
                /* No key in the file at all (a PEM keystore with only
                 * certificates): "no private key found", not a parse error. */
                if (r == GNUTLS_E_BASE64_DECODING_ERROR ||
                    r == GNUTLS_E_BASE64_UNEXPECTED_HEADER_ERROR ||
                    r == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE) {
                        *ret = NULL;
                        return 0;
                }
                return error_set(ret_error, -EINVAL, _("%s: invalid private key: %s"), what,
                            gnutls_strerror(r));
        }
        *ret = k;
        return 0;
}

static int load_pem_pair(const gnutls_datum_t *certs, const gnutls_datum_t *key,
                         const char *key_path,
                         const char *password, const char *what, const char *key_what,
                         CertBundle **ret, char **ret_error) {
        gnutls_x509_crt_t *crts = NULL;
        gnutls_x509_privkey_t xkey = NULL;
        unsigned n = 0;
        int r;

        r = import_pem_chain(certs, what, &crts, &n, ret_error);
        if (r < 0)
                return r;
        r = import_pem_key(key, password, key_what, &xkey, ret_error);
        if (r < 0) {
                for (unsigned i = 0; i < n; i++)
                        gnutls_x509_crt_deinit(crts[i]);
                gnutls_free(crts);
                return r;
        }
        if (!xkey && n > 0) {
                for (unsigned i = 0; i < n; i++)
                        gnutls_x509_crt_deinit(crts[i]);
                gnutls_free(crts);
                return error_set(ret_error, -EINVAL, _("%s: no private key found"), key_what);
        }
        return bundle_from_x509(crts, n, xkey, what, key_path, ret, ret_error);
}

static int load_pkcs12(const gnutls_datum_t *d, const char *password, const char *what,
                       CertBundle **ret, char **ret_error) {
        gnutls_pkcs12_t p12;
        gnutls_x509_privkey_t xkey = NULL;
        gnutls_x509_crt_t *chain = NULL;
        unsigned n_chain = 0;
        int r;

        r = gnutls_pkcs12_init(&p12);
        if (r < 0)
                return -ENOMEM;
        r = gnutls_pkcs12_import(p12, d, GNUTLS_X509_FMT_DER, 0);
        if (r < 0) {
                gnutls_pkcs12_deinit(p12);
                return error_set(ret_error, -EINVAL,
                            _("%s: neither PEM nor a readable PKCS#12 keystore: %s"), what,
                            gnutls_strerror(r));
        }
        r = gnutls_pkcs12_verify_mac(p12, password ? password : "");
        if (r < 0 && !password)
                /* Some tools write password-less files with a NULL password. */
                r = gnutls_pkcs12_verify_mac(p12, NULL);
        if (r < 0) {
                gnutls_pkcs12_deinit(p12);
                return error_set(ret_error, -EINVAL,
                            _("%s: wrong --storepass or damaged PKCS#12 keystore (%s)"), what,
                            gnutls_strerror(r));
        }
        r = gnutls_pkcs12_simple_parse(p12, password ? password : "", &xkey, &chain, &n_chain,
                                       NULL, NULL, NULL, 0);
        gnutls_pkcs12_deinit(p12);
        if (r < 0)
                return error_set(ret_error, -EINVAL, _("%s: cannot read PKCS#12 keystore: %s"), what,
                            gnutls_strerror(r));
        return bundle_from_x509(chain, n_chain, xkey, what, NULL, ret, ret_error);
}

int cert_bundle_load(const Config *c, CertBundle **ret, char **ret_error) {
        gnutls_datum_t d = {}, k = {};
        _cleanup_free_ char *what = NULL, *key_what = NULL;
        int r;

        if (c->keystore) {
                if (asprintf(&what, "--keystore %s", c->keystore) < 0)
                        return -ENOMEM;
                r = read_file(c->keystore, "--keystore", &d, ret_error);
                if (r < 0)
                        return r;
                if (is_pem(&d))
                        r = load_pem_pair(&d, &d, NULL, c->storepass, what, what, ret, ret_error);
                else
                        r = load_pkcs12(&d, c->storepass, what, ret, ret_error);
        } else {
                if (asprintf(&what, "--cert %s", c->cert) < 0 ||
                    asprintf(&key_what, "--key %s", c->key) < 0)
                        return -ENOMEM;
                r = read_file(c->cert, "--cert", &d, ret_error);
                if (r < 0)
                        return r;
                r = read_file(c->key, "--key", &k, ret_error);
                if (r < 0) {
                        gnutls_free(d.data);
                        return r;
                }
                r = load_pem_pair(&d, &k, c->key, NULL, what, key_what, ret, ret_error);
        }
        if (k.data) {
                gnutls_memset(k.data, 0, k.size);
                gnutls_free(k.data);
        }
        if (d.data) {
                gnutls_memset(d.data, 0, d.size);
                gnutls_free(d.data);
        }
        return r;
}

Creds *creds_ref(Creds *c) {
        if (c)
                atomic_fetch_add_explicit(&c->n_ref, 1, memory_order_relaxed);
        return c;
}

Creds *creds_unref(Creds *c) {
        if (!c || atomic_fetch_sub_explicit(&c->n_ref, 1, memory_order_acq_rel) > 1)
                return NULL;
        if (c->x509)
                gnutls_certificate_free_credentials(c->x509);
        if (c->priority)
                gnutls_priority_deinit(c->priority);
        if (c->priority_probe)
                gnutls_priority_deinit(c->priority_probe);
        cert_bundle_unref(c->bundle);
        access_rules_free(c->access);
        free(c->pins);
        verify_cache_free(c->verified);
        free(c);
        return NULL;
}

int creds_priority_string(const Config *c, char **ret) {
        /* ECDHE with AEAD ciphers only, as Ghostunnel's suites; TLS 1.2 is
         * always the floor. */
        char ciphers[128] = "";
        for (unsigned i = 0; i < c->n_cipher_suites; i++)
                strcat(ciphers, c->cipher_suites[i] == CIPHER_AES
                                        ? ":+AES-128-GCM:+AES-256-GCM"
                                        : ":+CHACHA20-POLY1305");
        if (asprintf(ret,
                     "NORMAL:-VERS-ALL:%s+VERS-TLS1.2:-CIPHER-ALL%s:-MAC-ALL:+AEAD:"
                     "-KX-ALL:+ECDHE-ECDSA:+ECDHE-RSA:%%SERVER_PRECEDENCE",
                     c->max_tls_version == TLS_VERSION_1_3 ? "+VERS-TLS1.3:" : "",
                     ciphers) < 0)
                return -ENOMEM;
        return 0;
}

/* config_validate() checked the pins already; a message all the same,
 * should one fail here. */
static int creds_parse_pins(Creds *cr, char * const *pins, char **ret_error) {
        size_t n = strv_length(pins);
        int r;

        if (n == 0)
                return 0;
        cr->pins = calloc(n, sizeof(SpkiPin));
        if (!cr->pins)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                r = spki_pin_parse("allow-spki-pin", pins[i], &cr->pins[i], ret_error);
                if (r < 0)
                        return r;
        }
        cr->n_pins = n;
        return 0;
}

int creds_new(const Config *c, CertBundle *bundle, gnutls_certificate_retrieve_function3 *retrieve,
              Creds **ret, char **ret_error) {
        _cleanup_(creds_unrefp) Creds *cr = NULL;
        _cleanup_free_ char *prio = NULL;
        const char *err_pos = NULL;
        int r;

        cr = calloc(1, sizeof *cr);
        if (!cr)
                return -ENOMEM;
        cr->n_ref = 1;
        cr->request_client_cert = !c->access.disable_authentication;
        /* The rules travel with the trust list: a connection is verified and
         * authorized by the generation it was accepted with. */
        r = access_rules_copy(&c->access, &cr->access);
        if (r < 0)
                return r;
        r = creds_parse_pins(cr, c->access.allow_spki_pin, ret_error);
        if (r < 0)
                return r;
        if (cr->request_client_cert && cr->n_pins == 0) {
                cr->verified = verify_cache_new(VERIFY_CACHE_SLOTS);
                if (!cr->verified)
                        return -ENOMEM;
        }

        r = gnutls_certificate_allocate_credentials(&cr->x509);
        if (r < 0)
                return -ENOMEM;

        if (c->cacert) {
                r = gnutls_certificate_set_x509_trust_file(cr->x509, c->cacert, GNUTLS_X509_FMT_PEM);
                if (r < 0)
                        return error_set(ret_error, -EINVAL, _("--cacert %s: cannot load CA bundle: %s"),
                                    c->cacert, gnutls_strerror(r));
                if (r == 0)
                        return error_set(ret_error, -EINVAL,
                                    _("--cacert %s: no PEM certificate found in the file"),
                                    c->cacert);
        } else {
                r = gnutls_certificate_set_x509_system_trust(cr->x509);
                if (r < 0)
                        return error_set(ret_error, -EINVAL, _("cannot load the system trust store: %s"),
                                    gnutls_strerror(r));
        }
        gnutls_certificate_set_retrieve_function3(cr->x509, retrieve);
        gnutls_certificate_set_verify_flags(cr->x509, 0);

        r = creds_priority_string(c, &prio);
        if (r < 0)
                return r;
        r = gnutls_priority_init2(&cr->priority, prio, &err_pos, 0);
        if (r < 0)
                return error_set(ret_error, -EINVAL, _("invalid TLS priority \"%s\" at \"%s\": %s"), prio,
                            strempty(err_pos), gnutls_strerror(r));

        if (c->auto_acme_cert) {
                /* The ALPN gate's probes: a ticket issued to a probe would let
                 * a client without a certificate resume (docs/HACKING.md,
                 * "GnuTLS handshake hooks and the ALPN gate"). */
                _cleanup_free_ char *probe = NULL;
                if (asprintf(&probe, "%s:%%NO_TICKETS", prio) < 0)
                        return -ENOMEM;
                r = gnutls_priority_init2(&cr->priority_probe, probe, &err_pos, 0);
                if (r < 0)
                        return error_set(ret_error, -EINVAL, _("invalid TLS priority \"%s\": %s"), probe,
                                    gnutls_strerror(r));
        }

        cr->bundle = cert_bundle_ref(bundle);
        *ret = TAKE_PTR(cr);
        return 0;
}

void creds_set_bundle(Creds *c, CertBundle *bundle) {
        CertBundle *old = c->bundle;
        c->bundle = cert_bundle_ref(bundle);
        cert_bundle_unref(old);
}

void current_creds_init(CurrentCreds *cur) {
        pthread_mutex_init(&cur->lock, NULL);
        cur->creds = NULL;
}

void current_creds_done(CurrentCreds *cur) {
        cur->creds = creds_unref(cur->creds);
        pthread_mutex_destroy(&cur->lock);
}

void current_creds_get(CurrentCreds *cur, Creds **ret_creds, CertBundle **ret_bundle) {
        pthread_mutex_lock(&cur->lock);
        *ret_creds = creds_ref(cur->creds);
        *ret_bundle = cur->creds ? cert_bundle_ref(cur->creds->bundle) : NULL;
        pthread_mutex_unlock(&cur->lock);
}

void current_creds_replace(CurrentCreds *cur, Creds *c) {
        Creds *old;

        pthread_mutex_lock(&cur->lock);
        old = cur->creds;
        cur->creds = c;
        pthread_mutex_unlock(&cur->lock);
        /* Connections that took it keep it alive; freeing needs no lock. */
        creds_unref(old);
}

void current_creds_set_bundle(CurrentCreds *cur, CertBundle *bundle) {
        CertBundle *old;

        cert_bundle_ref(bundle);
        pthread_mutex_lock(&cur->lock);
        old = cur->creds->bundle;
        cur->creds->bundle = bundle;
        pthread_mutex_unlock(&cur->lock);
        cert_bundle_unref(old);
}

int cert_bundle_from_pem(const char *chain, size_t chain_len, const char *key, size_t key_len,
                         const char *what, CertBundle **ret, char **ret_error) {
        const gnutls_datum_t c = { (unsigned char *) chain, (unsigned) chain_len };
        const gnutls_datum_t k = { (unsigned char *) key, (unsigned) key_len };

        return load_pem_pair(&c, &k, NULL, NULL, what, what, ret, ret_error);
}
