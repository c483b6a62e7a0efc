"""Test PKI for the tlsgate integration tests, made with python3-cryptography.

Everything is P-256/ECDSA-SHA256. Files are PEM; keys PKCS#8 unencrypted.
"""
import datetime
import ipaddress
import os
import subprocess

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _now():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None, microsecond=0)


def _name(cn=None, ou=None, o="tlsgate tests"):
    attrs = []
    if o:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, o))
    if ou:
        for u in ([ou] if isinstance(ou, str) else ou):
            attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, u))
    if cn:
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


class Issued:
    """A certificate with its key and the files they were written to."""

    def __init__(self, name, cert, key, chain, cert_path, key_path):
        self.name, self.cert, self.key, self.chain = name, cert, key, chain
        self.cert_path, self.key_path = cert_path, key_path  # cert_path holds leaf + chain

    def __repr__(self):
        return "<Issued %s %s>" % (self.name, self.cert.subject.rfc4514_string())


class CA:
    def __init__(self, directory, name, cn, parent=None, ou=None, days=30):
        self.directory, self.name = directory, name
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        issuer_name = parent.cert.subject if parent else _name(cn, ou)
        signing_key = parent.key if parent else self.key
        b = (x509.CertificateBuilder()
             .subject_name(_name(cn, ou))
             .issuer_name(issuer_name)
             .public_key(self.key.public_key())
             .serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(days=1))
             .not_valid_after(now + datetime.timedelta(days=days))
             .add_extension(x509.BasicConstraints(ca=True, path_length=None if parent is None else 0),
                            critical=True)
             .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                          key_encipherment=False, data_encipherment=False,
                                          key_agreement=False, key_cert_sign=True, crl_sign=True,
                                          encipher_only=False, decipher_only=False), critical=True)
             .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()),
                            critical=False))
        if parent:
            b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                parent.key.public_key()), critical=False)
        self.cert = b.sign(signing_key, hashes.SHA256())
        self.parent = parent
        self.cert_path = os.path.join(directory, name + ".pem")
        with open(self.cert_path, "wb") as f:
            f.write(self.cert.public_bytes(serialization.Encoding.PEM))

    def chain_certs(self):
        """This CA's certificate and its parents' up to (excluding) the root."""
        out, ca = [], self
        while ca.parent is not None:
            out.append(ca.cert)
            ca = ca.parent
        return out

    def issue(self, name, cn=None, ou=None, dns=(), ips=(), uris=(), server=False, client=True,
              not_before=None, not_after=None, subject=None):
        """subject (an x509.Name) replaces the one cn and ou would make."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        nb = not_before or now - datetime.timedelta(hours=1)
        na = not_after or now + datetime.timedelta(days=10)
        ekus = []
        if server:
            ekus.append(ExtendedKeyUsageOID.SERVER_AUTH)
        if client:
            ekus.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        b = (x509.CertificateBuilder()
             .subject_name(subject if subject is not None else _name(cn, ou))
             .issuer_name(self.cert.subject)
             .public_key(key.public_key())
             .serial_number(x509.random_serial_number())
             .not_valid_before(nb)
             .not_valid_after(na)
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
             .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                          key_encipherment=False, data_encipherment=False,
                                          key_agreement=False, key_cert_sign=False, crl_sign=False,
                                          encipher_only=False, decipher_only=False), critical=True)
             .add_extension(x509.ExtendedKeyUsage(ekus), critical=False)
             .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                 self.key.public_key()), critical=False))
        sans = ([x509.DNSName(d) for d in dns]
                + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
                + [x509.UniformResourceIdentifier(u) for u in uris])
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = b.sign(self.key, hashes.SHA256())
        chain = self.chain_certs()
        cert_path = os.path.join(self.directory, name + ".crt")
        key_path = os.path.join(self.directory, name + ".key")
        with open(cert_path, "wb") as f:
            for c in [cert] + chain:
                f.write(c.public_bytes(serialization.Encoding.PEM))
        with open(key_path, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
        os.chmod(key_path, 0o600)
        return Issued(name, cert, key, chain, cert_path, key_path)


class PKI:
    """The session-wide PKI. Attributes are Issued objects (cert_path/key_path)."""

    P12_PASSWORD = "s3cret pass"

    def __init__(self, directory):
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        self.ca = CA(directory, "ca", "tlsgate test root CA")
        self.other_ca = CA(directory, "other-ca", "tlsgate test root CA")  # same name, other key
        self.intermediate = CA(directory, "intermediate", "client", parent=self.ca, ou="ops")

        self.server = self.ca.issue("server", cn="localhost", dns=["localhost"],
                                    ips=["127.0.0.1", "::1"], server=True, client=False)
        self.client = self.ca.issue("client", cn="client")
        self.client_ou = self.ca.issue("client-ou", cn="ou-client", ou="ops")
        self.client_dns = self.ca.issue("client-dns", cn="dns-client", dns=["client.example"])
        self.client_ip = self.ca.issue("client-ip", cn="ip-client", ips=["10.1.2.3"])
        self.client_uri = self.ca.issue("client-uri", cn="uri-client",
                                        uris=["spiffe://example/ns/prod/svc"])
        self.client_other_ca = self.other_ca.issue("client-other-ca", cn="client", ou="ops",
                                                   dns=["client.example"])
        now = _now()
        self.client_expired = self.ca.issue("client-expired", cn="client", ou="ops",
                                            not_before=now - datetime.timedelta(days=3),
                                            not_after=now - datetime.timedelta(days=1))
        self.client_future = self.ca.issue("client-future", cn="client",
                                           not_before=now + datetime.timedelta(days=1),
                                           not_after=now + datetime.timedelta(days=3))
        # Leaf under an intermediate whose subject is CN=client, OU=ops: only
        # the leaf's own identity may count.
        self.client_via_int = self.intermediate.issue("client-via-int", cn="leaf-via-int")

        # Server keystores.
        self.keystore_pem = os.path.join(directory, "server-keystore.pem")
        with open(self.keystore_pem, "wb") as f:
            f.write(self.server.cert.public_bytes(serialization.Encoding.PEM))
            f.write(self.ca.cert.public_bytes(serialization.Encoding.PEM))
            f.write(self.server.key.private_bytes(serialization.Encoding.PEM,
                                                  serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
        self.keystore_p12_empty = os.path.join(directory, "server-empty.p12")
        self.keystore_p12_pass = os.path.join(directory, "server-pass.p12")
        self._openssl_p12(self.keystore_p12_empty, "")
        self._openssl_p12(self.keystore_p12_pass, self.P12_PASSWORD)
        # Unencrypted PKCS#12 without a MAC password made by cryptography.
        self.keystore_p12_noenc = os.path.join(directory, "server-noenc.p12")
        with open(self.keystore_p12_noenc, "wb") as f:
            f.write(pkcs12.serialize_key_and_certificates(
                b"server", self.server.key, self.server.cert, [self.ca.cert],
                serialization.NoEncryption()))

    def _openssl_p12(self, path, password):
        subprocess.run(
            ["openssl", "pkcs12", "-export", "-in", self.server.cert_path,
             "-inkey", self.server.key_path, "-certfile", self.ca.cert_path,
             "-name", "server", "-passout", "pass:" + password, "-out", path],
            check=True, stdin=subprocess.DEVNULL, capture_output=True, timeout=30)

    def issue_short_lived(self, name, seconds, cn="client"):
        """A client certificate valid from one minute ago until now + seconds."""
        now = _now()
        iss = self.ca.issue(name, cn=cn, not_before=now - datetime.timedelta(minutes=1),
                            not_after=now + datetime.timedelta(seconds=seconds))
        return iss
