/* SPDX-License-Identifier: MIT */
#include <gnutls/crypto.h>
#include <gnutls/x509-ext.h>
#include <gnutls/x509.h>
#include <pthread.h>
#include <time.h>

#include "challenges.h"

/* A host name without trailing dot (RFC 1035). */
#define CHALLENGE_NAME_MAX 253U
/* The validator does not check dates (RFC 8737 section 3; docs/HACKING.md,
 * "TLS-ALPN-01 as a validator checks it"); keep them short and tolerant of a
 * validator whose clock is a little behind. */
#define CHALLENGE_NOT_BEFORE_SLACK (60 * 60)
#define CHALLENGE_LIFETIME (7 * 24 * 60 * 60)
#define CHALLENGE_SUBJECT "CN=tlsgate ACME TLS-ALPN-01 challenge"

typedef struct Challenge {
        char *name;             /* what the validator sends as SNI */
        CertBundle *bundle;
} Challenge;

/* The ACME client adds and removes on the main thread; handshakes on every
 * serving thread look up (--threads): the table is only touched under lock. */
struct Challenges {
        pthread_mutex_t lock;
        Challenge *entries;
        unsigned n_entries, n_allocated;
};

static inline void gnutls_x509_crt_deinitp(gnutls_x509_crt_t *p) {
        if (*p)
                gnutls_x509_crt_deinit(*p);
}

static inline void gnutls_x509_privkey_deinitp(gnutls_x509_privkey_t *p) {
        if (*p)
                gnutls_x509_privkey_deinit(*p);
}

static inline void gnutls_datum_freep(gnutls_datum_t *d) {
        gnutls_free(d->data);
        d->data = NULL;
}

/* ASCII only: DNS names compare without regard to case (RFC 4343), and the
 * locale must not change what matches. */
static char ascii_tolower(char c) {
        return c >= 'A' && c <= 'Z' ? (char) (c - 'A' + 'a') : c;
}

static bool ascii_strcaseeq(const char *a, const char *b) {
        for (; *a && *b; a++, b++)
                if (ascii_tolower(*a) != ascii_tolower(*b))
                        return false;
        return *a == *b;
}

/* A DNS identifier TLS-ALPN-01 can validate: LDH labels (underscore
 * tolerated), no wildcard, no empty label, no trailing dot. */
static bool dns_name_valid(const char *s) {
        size_t len, label = 0;

        if (!s)
                return false;
        len = strlen(s);
        if (len == 0 || len > CHALLENGE_NAME_MAX)
                return false;
        for (size_t i = 0; i < len; i++) {
                char ch = s[i];

                if (ch == '.') {
                        if (label == 0)
                                return false;
                        label = 0;
                        continue;
                }
                if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                      (ch >= '0' && ch <= '9') || ch == '-' || ch == '_'))
                        return false;
                if (++label > 63)
                        return false;
        }
        return label > 0;
}

static int random_serial(gnutls_x509_crt_t crt) {
        uint8_t serial[16];
        int r;

        r = gnutls_rnd(GNUTLS_RND_NONCE, serial, sizeof serial);
        if (r < 0)
                return errno_from_gnutls(r);
        /* A positive INTEGER with a minimal DER encoding: no sign bit, no
         * leading zero byte. */
        serial[0] = (uint8_t) ((serial[0] & 0x7f) | 0x01);
        return errno_from_gnutls(gnutls_x509_crt_set_serial(crt, serial, sizeof serial));
}

/* The certificate of RFC 8737 section 3. san_type/san/san_size give the
 * single subjectAltName: a dNSName now; an iPAddress (4 or 16 raw bytes)
 * for IP identifiers (RFC 8738) needs nothing more here. */
static int challenge_crt_build(gnutls_x509_subject_alt_name_t san_type, const void *san,
                               size_t san_size, const uint8_t digest[ACME_TLS_ALPN_DIGEST_SIZE],
                               gnutls_x509_crt_t *ret_crt, gnutls_x509_privkey_t *ret_key) {
        _cleanup_(gnutls_x509_crt_deinitp) gnutls_x509_crt_t crt = NULL;
        _cleanup_(gnutls_x509_privkey_deinitp) gnutls_x509_privkey_t key = NULL;
        _cleanup_(gnutls_datum_freep) gnutls_datum_t ext = {};
        const gnutls_datum_t value = {
                .data = (unsigned char *) digest,
                .size = ACME_TLS_ALPN_DIGEST_SIZE,
        };
        time_t now = time(NULL);
        int r;

        r = gnutls_x509_privkey_init(&key);
        if (r < 0)
                return errno_from_gnutls(r);
        r = gnutls_x509_privkey_generate(key, GNUTLS_PK_ECDSA,
                                         GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0);
        if (r < 0)
                return errno_from_gnutls(r);

        r = gnutls_x509_crt_init(&crt);
        if (r < 0)
                return errno_from_gnutls(r);
        r = gnutls_x509_crt_set_version(crt, 3);
        if (r >= 0)
                r = gnutls_x509_crt_set_key(crt, key);
        if (r >= 0)
                r = gnutls_x509_crt_set_dn(crt, CHALLENGE_SUBJECT, NULL);
        if (r >= 0)
                r = gnutls_x509_crt_set_activation_time(crt, now - CHALLENGE_NOT_BEFORE_SLACK);
        if (r >= 0)
                r = gnutls_x509_crt_set_expiration_time(crt, now + CHALLENGE_LIFETIME);
        if (r >= 0)
                r = gnutls_x509_crt_set_key_usage(crt, GNUTLS_KEY_DIGITAL_SIGNATURE);
        if (r >= 0)
                /* "MUST contain a subjectAltName extension containing the
                 * identifier being validated and no other entries." */
                r = gnutls_x509_crt_set_subject_alt_name(crt, san_type, san, (unsigned) san_size,
                                                         GNUTLS_FSAN_SET);
        if (r < 0)
                return errno_from_gnutls(r);
        r = random_serial(crt);
        if (r < 0)
                return r;

        /* Authorization ::= OCTET STRING (SIZE (32)), in a critical
         * id-pe-acmeIdentifier extension (RFC 8737 sections 3 and 6.1).
         * SubjectKeyIdentifier is a plain OCTET STRING too, so its exporter
         * gives exactly the DER we need: 04 20 || digest. */
        r = gnutls_x509_ext_export_subject_key_id(&value, &ext);
        if (r < 0)
                return errno_from_gnutls(r);
        if (ext.size != 2 + ACME_TLS_ALPN_DIGEST_SIZE || ext.data[0] != 0x04 ||
            ext.data[1] != ACME_TLS_ALPN_DIGEST_SIZE)
                return -EINVAL; /* cannot happen, but never send a wrong proof */
        r = gnutls_x509_crt_set_extension_by_oid(crt, ACME_IDENTIFIER_OID, ext.data, ext.size, 1);
        if (r >= 0)
                r = gnutls_x509_crt_sign2(crt, crt, key, GNUTLS_DIG_SHA256, 0);
        if (r < 0)
                return errno_from_gnutls(r);

        *ret_crt = TAKE_PTR(crt);
        *ret_key = TAKE_PTR(key);
        return 0;
}

/* Takes nothing: crt and xkey stay the caller's. */
static int bundle_new(gnutls_x509_crt_t crt, gnutls_x509_privkey_t xkey, CertBundle **ret) {
        _cleanup_(cert_bundle_unrefp) CertBundle *b = NULL;
        gnutls_datum_t dn = {};
        int r;

        b = calloc(1, sizeof *b);
        if (!b)
                return -ENOMEM;
        b->n_ref = 1;
        b->pcerts = calloc(1, sizeof *b->pcerts);
        if (!b->pcerts)
                return -ENOMEM;
        r = gnutls_pcert_import_x509(&b->pcerts[0], crt, 0);
        if (r < 0)
                return errno_from_gnutls(r);
        b->n_pcerts = 1;

        r = gnutls_privkey_init(&b->key);
        if (r < 0)
                return errno_from_gnutls(r);
        r = gnutls_privkey_import_x509(b->key, xkey, GNUTLS_PRIVKEY_IMPORT_COPY);
        if (r < 0)
                return errno_from_gnutls(r);

        if (gnutls_x509_crt_get_dn3(crt, &dn, 0) >= 0) {
                b->subject = strndup((const char *) dn.data, dn.size);
                gnutls_free(dn.data);
                if (!b->subject)
                        return -ENOMEM;
        }
        b->not_after = gnutls_x509_crt_get_expiration_time(crt);
        *ret = TAKE_PTR(b);
        return 0;
}

int challenge_cert_new(const char *domain, const uint8_t digest[ACME_TLS_ALPN_DIGEST_SIZE],
                       CertBundle **ret) {
        _cleanup_(gnutls_x509_crt_deinitp) gnutls_x509_crt_t crt = NULL;
        _cleanup_(gnutls_x509_privkey_deinitp) gnutls_x509_privkey_t key = NULL;
        int r;

        if (!digest || !ret || !dns_name_valid(domain))
                return -EINVAL;
        r = challenge_crt_build(GNUTLS_SAN_DNSNAME, domain, strlen(domain), digest, &crt, &key);
        if (r < 0)
                return r;
        return bundle_new(crt, key, ret);
}

int challenges_new(Challenges **ret) {
        Challenges *c;

        if (!ret)
                return -EINVAL;
        c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        pthread_mutex_init(&c->lock, NULL);
        *ret = c;
        return 0;
}

Challenges *challenges_free(Challenges *c) {
        if (!c)
                return NULL;
        for (unsigned i = 0; i < c->n_entries; i++) {
                free(c->entries[i].name);
                cert_bundle_unref(c->entries[i].bundle);
        }
        free(c->entries);
        pthread_mutex_destroy(&c->lock);
        free(c);
        return NULL;
}

static Challenge *challenges_find(const Challenges *c, const char *name) {
        if (!c || !name)
                return NULL;
        for (unsigned i = 0; i < c->n_entries; i++)
                if (ascii_strcaseeq(c->entries[i].name, name))
                        return &c->entries[i];
        return NULL;
}

/* Registers bundle (taking the reference) under name. */
static int challenges_put(Challenges *c, const char *name, CertBundle *bundle) {
        Challenge *e = challenges_find(c, name);
        char *copy;

        if (e) {
                cert_bundle_unref(e->bundle);
                e->bundle = bundle;
                return 0;
        }

        copy = strdup(name);
        if (!copy)
                return -ENOMEM;
        if (c->n_entries == c->n_allocated) {
                unsigned n = c->n_allocated ? c->n_allocated * 2 : 4;
                Challenge *p = reallocarray(c->entries, n, sizeof *p);

                if (!p) {
                        free(copy);
                        return -ENOMEM;
                }
                c->entries = p;
                c->n_allocated = n;
        }
        c->entries[c->n_entries++] = (Challenge) {
                .name = copy,
                .bundle = bundle,
        };
        return 0;
}

int challenges_add(Challenges *c, const char *domain,
                   const uint8_t digest[ACME_TLS_ALPN_DIGEST_SIZE]) {
        CertBundle *b = NULL;
        int r;

        if (!c)
                return -EINVAL;
        r = challenge_cert_new(domain, digest, &b);
        if (r < 0)
                return r;
        pthread_mutex_lock(&c->lock);
        r = challenges_put(c, domain, b);
        pthread_mutex_unlock(&c->lock);
        if (r < 0)
                cert_bundle_unref(b);
        return r;
}

int challenges_remove(Challenges *c, const char *domain) {
        CertBundle *gone;
        Challenge *e;

        if (!c)
                return -ENOENT;
        pthread_mutex_lock(&c->lock);
        e = challenges_find(c, domain);
        if (!e) {
                pthread_mutex_unlock(&c->lock);
                return -ENOENT;
        }
        free(e->name);
        gone = e->bundle;
        *e = c->entries[--c->n_entries];
        pthread_mutex_unlock(&c->lock);
        /* Handshakes that took a reference keep their certificate. */
        cert_bundle_unref(gone);
        return 0;
}

CertBundle *challenges_lookup(Challenges *c, const char *sni) {
        CertBundle *b = NULL;
        Challenge *e;

        if (!c || !sni || !*sni)
                return NULL;
        pthread_mutex_lock(&c->lock);
        e = challenges_find(c, sni);
        if (e)
                b = cert_bundle_ref(e->bundle);
        pthread_mutex_unlock(&c->lock);
        return b;
}

unsigned challenges_count(Challenges *c) {
        unsigned n;

        if (!c)
                return 0;
        pthread_mutex_lock(&c->lock);
        n = c->n_entries;
        pthread_mutex_unlock(&c->lock);
        return n;
}
