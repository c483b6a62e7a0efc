/* SPDX-License-Identifier: MIT */
#include <gnutls/pkcs11.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "pkcs11.h"
#include "strv.h"
#include "util.h"

/* Bounds on what a module may list: far more than any real module has. */
#define TOKENS_MAX 256U
#define KEY_ID_MAX 64U

struct TokenKey {
        atomic_uint n_ref;              /* bundles on every thread share the key */
        gnutls_privkey_t key;
        unsigned char key_id[KEY_ID_MAX]; /* SHA-256 of its public key */
        size_t key_id_len;
        char *token_label;              /* for messages */
};

/* What the PIN callback hands GnuTLS while token_key_open() runs. GnuTLS's
 * PIN function is process-wide; after start-up it has no PIN to give. */
typedef struct PinRequest {
        const char *pin;                /* NULL: none was given */
        bool missing;                   /* the token asked, and there was no PIN */
        bool wrong;                     /* the token refused the PIN */
} PinRequest;

static int on_pin(void *userdata, int attempt, const char *token_url, const char *token_label,
                  unsigned flags, char *pin, size_t pin_max) {
        PinRequest *req = userdata;
        size_t n;

        (void) token_url;
        if (!req) {
                /* The login lasts as long as the key's session: a token that
                 * lost it (pulled out and put back) needs a restart. */
                log_warning("PKCS#11 token \"%s\" asks for the PIN again; restart tlsgate to log "
                            "in again", strempty(token_label));
                return GNUTLS_E_PKCS11_PIN_ERROR;
        }
        if (flags & GNUTLS_PIN_SO)
                return GNUTLS_E_PKCS11_PIN_ERROR; /* never the security officer */
        if (!req->pin) {
                req->missing = true;
                return GNUTLS_E_PKCS11_PIN_ERROR;
        }
        /* One attempt only: trying a refused PIN again brings the token
         * closer to locking it. */
        if (attempt > 0 || (flags & GNUTLS_PIN_WRONG)) {
                req->wrong = true;
                return GNUTLS_E_PKCS11_PIN_ERROR;
        }
        n = strlen(req->pin);
        if (n >= pin_max) {
                req->wrong = true;
                return GNUTLS_E_PKCS11_PIN_ERROR;
        }
        memcpy(pin, req->pin, n + 1);
        return 0;
}

TokenKey *token_key_ref(TokenKey *k) {
        if (k)
                atomic_fetch_add_explicit(&k->n_ref, 1, memory_order_relaxed);
        return k;
}

TokenKey *token_key_unref(TokenKey *k) {
        if (!k || atomic_fetch_sub_explicit(&k->n_ref, 1, memory_order_acq_rel) > 1)
                return NULL;
        if (k->key)
                gnutls_privkey_deinit(k->key);
        free(k->token_label);
        free(k);
        /* The one module this process loaded (token_key_open()) goes with
         * its one key. */
        gnutls_pkcs11_deinit();
        return NULL;
}

/* The URL of the token labelled label, or of the only labelled token when
 * label is NULL (SoftHSM and others list an unlabelled, empty one). */
static int find_token(const char *module, const char *label, char **ret_url, char **ret_error) {
        _cleanup_strv_free_ char **labels = NULL;
        _cleanup_free_ char *found = NULL, *list = NULL;
        unsigned n_found = 0;
        int r;

        for (unsigned seq = 0; seq < TOKENS_MAX; seq++) {
                char *url = NULL, buf[256];
                size_t size = sizeof buf;
                bool match;

                r = gnutls_pkcs11_token_get_url(seq, GNUTLS_PKCS11_URL_GENERIC, &url);
                if (r == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE)
                        break;
                if (r < 0)
                        return error_set(ret_error, -EIO,
                                    _("--pkcs11-module %s: cannot list the tokens: %s"), module,
                                    gnutls_strerror(r));
                r = gnutls_pkcs11_token_get_info(url, GNUTLS_PKCS11_TOKEN_LABEL, buf, &size);
                if (r < 0 || buf[0] == '\0') { /* unreadable, or not initialized */
                        gnutls_free(url);
                        continue;
                }
                match = !label || streq(buf, label);
                if (match && n_found++ == 0)
                        found = strdup(url); /* the first of equal labels, as Ghostunnel */
                gnutls_free(url);
                if ((match && !found) || strv_extend(&labels, buf) < 0)
                        return -ENOMEM;
        }

        for (char **l = labels; l && *l; l++) {
                char *s = NULL;
                if (asprintf(&s, "%s%s\"%s\"", strempty(list), list ? ", " : "", *l) < 0)
                        return -ENOMEM;
                free(list);
                list = s;
        }
        if (label && n_found == 0)
                return error_set(ret_error, -ENOENT,
                            _("--pkcs11-token-label %s: no token with this label in --pkcs11-module "
                              "%s (its tokens: %s)"),
                            label, module, list ? list : _("none"));
        if (!label && n_found == 0)
                return error_set(ret_error, -ENOENT,
                            _("--pkcs11-module %s: the module has no initialized token"), module);
        if (!label && n_found > 1)
                return error_set(ret_error, -EINVAL,
                            _("--pkcs11-module %s: the module has several tokens (%s): choose one "
                              "with --pkcs11-token-label"),
                            module, list);
        *ret_url = TAKE_PTR(found);
        return 0;
}

static int pin_error(const PinRequest *req, const char *token, const char *detail,
                     char **ret_error) {
        if (req->missing)
                return error_set(ret_error, -EACCES,
                            _("PKCS#11 token \"%s\" needs a PIN to log in: give --pkcs11-pin or "
                              "$PKCS11_PIN"), token);
        if (req->wrong)
                return error_set(ret_error, -EACCES,
                            _("--pkcs11-pin: the PKCS#11 token \"%s\" refused the PIN (%s)"),
                            token, detail);
        return 0;
}

/* Imports the private key object at url and keeps it if its public key is
 * the leaf's. Returns 1 when kept, 0 when it is another key. */
static int try_key(const char *url, const unsigned char *want, size_t want_len, TokenKey *k) {
        gnutls_privkey_t key = NULL;
        gnutls_pubkey_t pub = NULL;
        unsigned char id[KEY_ID_MAX];
        size_t id_len = sizeof id;
        int r;

        r = gnutls_privkey_init(&key);
        if (r < 0)
                return r;
        r = gnutls_privkey_import_url(key, url, 0);
        if (r >= 0)
                r = gnutls_pubkey_init(&pub);
        if (r >= 0)
                r = gnutls_pubkey_import_privkey(pub, key, 0, 0);
        if (r >= 0)
                r = gnutls_pubkey_get_key_id(pub, GNUTLS_KEYID_USE_SHA256, id, &id_len);
        gnutls_pubkey_deinit(pub);
        if (r < 0 || id_len != want_len || memcmp(id, want, want_len) != 0) {
                gnutls_privkey_deinit(key);
                return r < 0 ? r : 0; /* a GnuTLS error, for the caller's message */
        }
        k->key = key;
        memcpy(k->key_id, id, id_len);
        k->key_id_len = id_len;
        return 1;
}

int token_key_open(const char *module, const char *token_label, const char *pin,
                   gnutls_x509_crt_t leaf, const char *what, TokenKey **ret, char **ret_error) {
        _cleanup_(token_key_unrefp) TokenKey *k = NULL;
        _cleanup_free_ char *token_url = NULL;
        gnutls_pkcs11_obj_t *objs = NULL;
        unsigned n_objs = 0;
        unsigned char want[KEY_ID_MAX];
        size_t want_len = sizeof want;
        PinRequest req = { .pin = pin };
        char label[256];
        size_t label_size = sizeof label;
        int r, last = 0;

        r = gnutls_x509_crt_get_key_id(leaf, GNUTLS_KEYID_USE_SHA256, want, &want_len);
        if (r < 0)
                return error_set(ret_error, -EINVAL, _("%s: cannot read the certificate's public key: %s"),
                            what, gnutls_strerror(r));
        if (access(module, R_OK) < 0)
                return error_set(ret_error, -errno, _("--pkcs11-module %s: %s"), module,
                            strerror(errno));

        /* Only the module given: no p11-kit configuration, no other tokens. */
        r = gnutls_pkcs11_init(GNUTLS_PKCS11_FLAG_MANUAL, NULL);
        if (r < 0)
                return error_set(ret_error, -EIO, _("cannot initialize PKCS#11 support: %s"),
                            gnutls_strerror(r));
        k = calloc(1, sizeof *k);
        if (!k) {
                gnutls_pkcs11_deinit();
                return -ENOMEM;
        }
        k->n_ref = 1; /* from here on, its unref undoes gnutls_pkcs11_init() */
        r = gnutls_pkcs11_add_provider(module, NULL);
        if (r < 0)
                return error_set(ret_error, -EIO,
                            _("--pkcs11-module %s: cannot load the PKCS#11 module: %s"), module,
                            gnutls_strerror(r));
        r = find_token(module, token_label, &token_url, ret_error);
        if (r < 0)
                return r;
        /* find_token() read it already: only the label's name for messages. */
        if (gnutls_pkcs11_token_get_info(token_url, GNUTLS_PKCS11_TOKEN_LABEL, label,
                                         &label_size) < 0)
                snprintf(label, sizeof label, "%s", strempty(token_label));
        k->token_label = strdup(label);
        if (!k->token_label)
                return -ENOMEM;

        gnutls_pkcs11_set_pin_function(on_pin, &req);
        r = gnutls_pkcs11_obj_list_import_url4(&objs, &n_objs, token_url,
                                               GNUTLS_PKCS11_OBJ_FLAG_PRIVKEY |
                                               GNUTLS_PKCS11_OBJ_FLAG_LOGIN);
        if (r < 0) {
                gnutls_pkcs11_set_pin_function(on_pin, NULL);
                int q = pin_error(&req, k->token_label, gnutls_strerror(r), ret_error);
                if (q < 0)
                        return q;
                return error_set(ret_error, -EIO,
                            _("PKCS#11 token \"%s\": cannot list its private keys: %s"),
                            k->token_label, gnutls_strerror(r));
        }
        r = 0;
        for (unsigned i = 0; i < n_objs; i++) {
                char *url = NULL;

                if (r <= 0 && gnutls_pkcs11_obj_export_url(objs[i], GNUTLS_PKCS11_URL_GENERIC,
                                                           &url) >= 0) {
                        r = try_key(url, want, want_len, k);
                        if (r < 0)
                                last = r; /* and try the next one */
                        gnutls_free(url);
                }
                gnutls_pkcs11_obj_deinit(objs[i]);
        }
        gnutls_free(objs);
        /* The key's own session stays logged in; nobody else may ask. */
        gnutls_pkcs11_set_pin_function(on_pin, NULL);
        if (r <= 0) {
                r = pin_error(&req, k->token_label, gnutls_strerror(last), ret_error);
                if (r < 0)
                        return r;
                if (n_objs == 0)
                        return error_set(ret_error, -ENOENT,
                                    _("PKCS#11 token \"%s\" holds no private key this PIN can use"),
                                    k->token_label);
                return error_set(ret_error, -ENOENT,
                            _("%s: no private key on the PKCS#11 token \"%s\" matches the "
                              "certificate (private keys on the token: %u%s%s)"),
                            what, k->token_label, n_objs, last < 0 ? "; " : "",
                            last < 0 ? gnutls_strerror(last) : "");
        }
        log_info("PKCS#11: logged in to token \"%s\" (module %s) and using its private key for %s",
                 k->token_label, module, what);
        *ret = TAKE_PTR(k);
        return 0;
}

static int read_chain(const char *path, const char *what, gnutls_x509_crt_t **ret, unsigned *ret_n,
                      char **ret_error) {
        gnutls_datum_t d = {};
        int r;

        r = gnutls_load_file(path, &d);
        if (r < 0)
                return error_set(ret_error, -EIO, _("%s: cannot read: %s"), what,
                            gnutls_strerror(r));
        r = gnutls_x509_crt_list_import2(ret, ret_n, &d, GNUTLS_X509_FMT_PEM,
                                         GNUTLS_X509_CRT_LIST_FAIL_IF_UNSORTED);
        gnutls_free(d.data);
        if (r < 0)
                return error_set(ret_error, -EINVAL,
                            _("%s: no PEM certificate chain (leaf first) in the file: %s"), what,
                            gnutls_strerror(r));
        if (*ret_n == 0)
                return error_set(ret_error, -EINVAL, _("%s: no certificate found"), what);
        return 0;
}

static int bundle_new(gnutls_x509_crt_t *crts, unsigned n, TokenKey *token, const char *what,
                      CertBundle **ret, char **ret_error) {
        _cleanup_(cert_bundle_unrefp) CertBundle *b = NULL;
        gnutls_datum_t dn = {};
        int r;

        b = calloc(1, sizeof *b);
        if (!b)
                return -ENOMEM;
        b->n_ref = 1;
        b->token = token_key_ref(token);
        b->key = token->key; /* the token's: the bundle only borrows it */
        b->pcerts = calloc(n, sizeof *b->pcerts);
        if (!b->pcerts)
                return -ENOMEM;
        r = gnutls_pcert_import_x509_list(b->pcerts, crts, &n, 0);
        if (r < 0)
                return error_set(ret_error, -EINVAL, _("%s: cannot use certificate chain: %s"), what,
                            gnutls_strerror(r));
        b->n_pcerts = n;
        if (gnutls_x509_crt_get_dn3(crts[0], &dn, 0) >= 0) {
                b->subject = strndup((const char *) dn.data, dn.size);
                gnutls_free(dn.data);
        }
        b->not_before = gnutls_x509_crt_get_activation_time(crts[0]);
        b->not_after = gnutls_x509_crt_get_expiration_time(crts[0]);
        *ret = TAKE_PTR(b);
        return 0;
}

int token_bundle_load(const Config *c, TokenKey **token, CertBundle **ret, char **ret_error) {
        const char *path = c->keystore ? c->keystore : c->cert;
        _cleanup_free_ char *what = NULL;
        gnutls_x509_crt_t *crts = NULL;
        unsigned n = 0;
        int r;

        if (asprintf(&what, "%s %s", c->keystore ? "--keystore" : "--cert", path) < 0)
                return -ENOMEM;
        r = read_chain(path, what, &crts, &n, ret_error);
        if (r < 0)
                goto finish;
        if (!*token)
                r = token_key_open(c->pkcs11_module, c->pkcs11_token_label, c->pkcs11_pin, crts[0],
                                   what, token, ret_error);
        else {
                unsigned char id[KEY_ID_MAX];
                size_t id_len = sizeof id;

                /* A reload: the key handle stays, the certificate must fit it. */
                r = gnutls_x509_crt_get_key_id(crts[0], GNUTLS_KEYID_USE_SHA256, id, &id_len);
                if (r < 0 || id_len != (*token)->key_id_len ||
                    memcmp(id, (*token)->key_id, id_len) != 0)
                        r = error_set(ret_error, -EINVAL,
                                 _("%s: the certificate does not match the private key on the "
                                   "PKCS#11 token \"%s\" (restart tlsgate for a new key)"),
                                 what, (*token)->token_label);
                else
                        log_debug("PKCS#11: re-using the private key handle of token \"%s\"",
                                  (*token)->token_label);
        }
        if (r >= 0)
                r = bundle_new(crts, n, *token, what, ret, ret_error);
finish:
        for (unsigned i = 0; i < n; i++)
                gnutls_x509_crt_deinit(crts[i]);
        gnutls_free(crts);
        return r;
}
