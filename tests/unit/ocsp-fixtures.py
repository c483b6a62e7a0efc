#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Writes ocsp-fixtures.h for test-ocsp.c: certificates and crafted OCSP
responses with fixed times, made with python3-cryptography.

    /usr/bin/python3 tests/unit/ocsp-fixtures.py > tests/unit/ocsp-fixtures.h

The responses are about 2030-01-01 (FIXTURE_THIS_UPDATE); the checks under
test take "now" as a parameter, so the fixtures never go stale. The
certificates are valid from 2020 to 2099 because GnuTLS checks a delegated
responder's certificate against the real clock.
"""
import datetime
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

NOT_BEFORE = datetime.datetime(2020, 1, 1)
NOT_AFTER = datetime.datetime(2099, 1, 1)
LEAF_NOT_AFTER = datetime.datetime(2031, 1, 1)
THIS = datetime.datetime(2030, 1, 1)
NEXT = THIS + datetime.timedelta(days=7)
REVOKED_AT = datetime.datetime(2029, 12, 1)
OCSP_URL = "http://127.0.0.1:1/ocsp"


def name(cn):
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "tlsgate ocsp fixtures"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def key_usage(ca):
    return x509.KeyUsage(digital_signature=True, content_commitment=False,
                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                         key_cert_sign=ca, crl_sign=ca, encipher_only=False, decipher_only=False)


def make_ca(cn):
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(name(cn)).issuer_name(name(cn))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOT_BEFORE).not_valid_after(NOT_AFTER)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(key_usage(True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    return cert, key


def issue(ca, ca_key, cn, aia=None, eku=None, not_after=NOT_AFTER):
    key = ec.generate_private_key(ec.SECP256R1())
    b = (x509.CertificateBuilder()
         .subject_name(name(cn)).issuer_name(ca.subject)
         .public_key(key.public_key())
         .serial_number(x509.random_serial_number())
         .not_valid_before(NOT_BEFORE).not_valid_after(not_after)
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(key_usage(False), critical=True)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                        critical=False))
    if eku:
        b = b.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    if aia:
        b = b.add_extension(x509.AuthorityInformationAccess(aia), critical=False)
    return b.sign(ca_key, hashes.SHA256()), key


def response(cert, issuer, signer, signer_key, status=ocsp.OCSPCertStatus.GOOD, certs=(),
             algorithm=hashes.SHA1(), next_update=NEXT, by_hash=True):
    b = ocsp.OCSPResponseBuilder().add_response(
        cert=cert, issuer=issuer, algorithm=algorithm, cert_status=status, this_update=THIS,
        next_update=next_update,
        revocation_time=REVOKED_AT if status == ocsp.OCSPCertStatus.REVOKED else None,
        revocation_reason=(x509.ReasonFlags.key_compromise
                           if status == ocsp.OCSPCertStatus.REVOKED else None))
    b = b.responder_id(ocsp.OCSPResponderEncoding.HASH if by_hash
                       else ocsp.OCSPResponderEncoding.NAME, signer)
    if certs:
        b = b.certificates(list(certs))
    return b.sign(signer_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def key_pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def c_string(ident, text):
    lines = ['static const char %s[] =' % ident]
    for line in text.splitlines():
        lines.append('        "%s\\n"' % line)
    return "\n".join(lines) + ";\n"


def c_bytes(ident, data):
    out = ["static const unsigned char %s[] = {" % ident]
    for i in range(0, len(data), 12):
        out.append("        " + " ".join("0x%02x," % b for b in data[i:i + 12]))
    out.append("};")
    return "\n".join(out) + "\n"


def main():
    ca, ca_key = make_ca("fixture CA")
    rogue_ca, rogue_key = make_ca("fixture CA")  # same name, other key
    aia = [
        x509.AccessDescription(AuthorityInformationAccessOID.CA_ISSUERS,
                               x509.UniformResourceIdentifier("http://127.0.0.1:1/ca.crt")),
        x509.AccessDescription(AuthorityInformationAccessOID.OCSP,
                               x509.UniformResourceIdentifier("ldap://127.0.0.1/ocsp")),
        x509.AccessDescription(AuthorityInformationAccessOID.OCSP,
                               x509.UniformResourceIdentifier(OCSP_URL)),
    ]
    leaf, leaf_key = issue(ca, ca_key, "leaf", aia=aia, eku=[ExtendedKeyUsageOID.SERVER_AUTH],
                           not_after=LEAF_NOT_AFTER)
    leaf_noaia, _ = issue(ca, ca_key, "leaf without AIA", eku=[ExtendedKeyUsageOID.SERVER_AUTH])
    other, _ = issue(ca, ca_key, "other leaf", aia=aia)
    responder, responder_key = issue(ca, ca_key, "fixture OCSP responder",
                                     eku=[ExtendedKeyUsageOID.OCSP_SIGNING])
    responder_noeku, noeku_key = issue(ca, ca_key, "fixture responder without OCSPSigning",
                                       eku=[ExtendedKeyUsageOID.SERVER_AUTH])
    rogue_responder, rogue_responder_key = issue(rogue_ca, rogue_key, "fixture OCSP responder",
                                                 eku=[ExtendedKeyUsageOID.OCSP_SIGNING])

    G, R, U = ocsp.OCSPCertStatus.GOOD, ocsp.OCSPCertStatus.REVOKED, ocsp.OCSPCertStatus.UNKNOWN
    responses = {
        "good_ca": response(leaf, ca, ca, ca_key),
        "good_ca_by_name": response(leaf, ca, ca, ca_key, by_hash=False),
        "good_delegated": response(leaf, ca, responder, responder_key, certs=[responder]),
        "good_sha256": response(leaf, ca, ca, ca_key, algorithm=hashes.SHA256()),
        "revoked": response(leaf, ca, ca, ca_key, status=R),
        "unknown": response(leaf, ca, ca, ca_key, status=U),
        "no_next": response(leaf, ca, ca, ca_key, next_update=None),
        "wrong_serial": response(other, ca, ca, ca_key),
        "rogue_ca": response(leaf, ca, rogue_ca, rogue_key),
        "delegated_noeku": response(leaf, ca, responder_noeku, noeku_key,
                                    certs=[responder_noeku]),
        "rogue_delegated": response(leaf, ca, rogue_responder, rogue_responder_key,
                                    certs=[rogue_responder]),
        "try_later": ocsp.OCSPResponseBuilder.build_unsuccessful(
            ocsp.OCSPResponseStatus.TRY_LATER).public_bytes(serialization.Encoding.DER),
    }

    w = sys.stdout.write
    w("/* SPDX-License-Identifier: MIT */\n")
    w("/* Generated by ocsp-fixtures.py; do not edit. */\n#pragma once\n\n#include <time.h>\n\n")
    epoch = datetime.datetime(1970, 1, 1)
    for ident, dt in (("FIXTURE_THIS_UPDATE", THIS), ("FIXTURE_NEXT_UPDATE", NEXT),
                      ("FIXTURE_REVOKED_AT", REVOKED_AT), ("FIXTURE_LEAF_NOT_AFTER", LEAF_NOT_AFTER)):
        w("#define %s ((time_t) %dLL)\n" % (ident, int((dt - epoch).total_seconds())))
    w('#define FIXTURE_OCSP_URL "%s"\n\n' % OCSP_URL)
    for ident, cert in (("ca", ca), ("rogue_ca", rogue_ca), ("leaf", leaf),
                        ("leaf_noaia", leaf_noaia), ("other", other), ("responder", responder)):
        w(c_string("fixture_%s_pem" % ident, pem(cert)))
        w("\n")
    w(c_string("fixture_leaf_key_pem", key_pem(leaf_key)))
    w("\n")
    for ident, der in responses.items():
        w(c_bytes("fixture_resp_%s" % ident, der))
        w("\n")


if __name__ == "__main__":
    main()
