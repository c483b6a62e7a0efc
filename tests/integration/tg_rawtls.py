"""Hand-built TLS ClientHellos and just enough of a TLS client to read the
server's first flight (pure Python: stdlib plus `cryptography`, which the
suite already uses). For the attack tests: hellos real clients cannot send
(two ALPN extensions, empty or lying ALPN lengths, a second ClientHello that
differs from the first after a HelloRetryRequest, a stale session id).

What the server answered tells its decision without finishing the handshake:

  TLS 1.2  ServerHello, Certificate, ServerKeyExchange, CertificateRequest and
           ServerHelloDone are plaintext: the negotiated ALPN is in the
           ServerHello, a CertificateRequest means "client certificate
           needed", the session id shows whether a session was resumed.
  TLS 1.3  The ServerHello is plaintext, the rest of the flight is encrypted
           under the handshake keys. We offer one key share (X25519 or P-256)
           and TLS_AES_128_GCM_SHA256 only, so we can derive those keys
           (RFC 8446 section 7) and read EncryptedExtensions (ALPN) and
           CertificateRequest. We never send a Finished.

Usage:
    ch = ClientHello("1.3", alpn=["acme-tls/1"], sni="test.example")
    with RawTLS(addr) as t:
        f = t.hello(ch)          # a Flight: alert, closed, server_hello, ...
        if f.hrr: ...            # then t.hello(ch.retry(f, alpn=[...]))
"""
import hashlib
import hmac
import os
import socket
import struct
import time

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

# Record content types (RFC 8446 section 5.1).
CT_CCS, CT_ALERT, CT_HANDSHAKE, CT_APPDATA = 20, 21, 22, 23
# Handshake types.
HS_CLIENT_HELLO = 1
HS_SERVER_HELLO = 2
HS_NEW_SESSION_TICKET = 4
HS_ENCRYPTED_EXTENSIONS = 8
HS_CERTIFICATE = 11
HS_SERVER_KEY_EXCHANGE = 12
HS_CERTIFICATE_REQUEST = 13
HS_SERVER_HELLO_DONE = 14
HS_CERTIFICATE_VERIFY = 15
HS_FINISHED = 20
HS_MESSAGE_HASH = 254
# Extensions.
EXT_SERVER_NAME = 0
EXT_SUPPORTED_GROUPS = 10
EXT_EC_POINT_FORMATS = 11
EXT_SIGNATURE_ALGORITHMS = 13
EXT_ALPN = 16
EXT_EXTENDED_MASTER_SECRET = 23
EXT_SESSION_TICKET = 35
EXT_SUPPORTED_VERSIONS = 43
EXT_COOKIE = 44
EXT_PSK_KEY_EXCHANGE_MODES = 45
EXT_KEY_SHARE = 51
EXT_RENEGOTIATION_INFO = 0xff01
# Named groups.
GROUPS = {"secp256r1": 0x0017, "secp384r1": 0x0018, "x25519": 0x001d, "x448": 0x001e}
GROUP_NAMES = {v: k for k, v in GROUPS.items()}

TLS13_AES_128_GCM_SHA256 = 0x1301
TLS12_SUITES = [0xc02b, 0xc02f, 0xc02c, 0xc030]  # ECDHE-{ECDSA,RSA}-AES{128,256}-GCM
SIG_ALGS = [0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601, 0x0807]

HRR_RANDOM = hashlib.sha256(b"HelloRetryRequest").digest()

ALERTS = {0: "close_notify", 10: "unexpected_message", 20: "bad_record_mac",
          22: "record_overflow", 40: "handshake_failure", 42: "bad_certificate",
          47: "illegal_parameter", 49: "access_denied", 50: "decode_error",
          51: "decrypt_error", 70: "protocol_version", 71: "insufficient_security",
          80: "internal_error", 86: "inappropriate_fallback", 90: "user_canceled",
          100: "no_renegotiation", 109: "missing_extension", 110: "unsupported_extension",
          112: "unrecognized_name", 116: "certificate_required", 120: "no_application_protocol"}


# ---------------------------------------------------------------------------
# Encoding
def u8(n):
    return struct.pack("!B", n)


def u16(n):
    return struct.pack("!H", n)


def u24(n):
    return struct.pack("!I", n)[1:]


def vec8(b):
    return u8(len(b)) + b


def vec16(b):
    return u16(len(b)) + b


def vec24(b):
    return u24(len(b)) + b


def ext(etype, body):
    """One encoded extension (type, length, body)."""
    return u16(etype) + vec16(body)


def alpn_body(names):
    """RFC 7301 ProtocolNameList; names are str or bytes, taken as given (empty ones too)."""
    return vec16(b"".join(vec8(n.encode() if isinstance(n, str) else n) for n in names))


def sni_body(host):
    h = host.encode() if isinstance(host, str) else host
    return vec16(u8(0) + vec16(h))


def handshake(htype, body):
    return u8(htype) + vec24(body)


def records(ctype, payload, version=0x0303, max_fragment=16384):
    """payload split into records of at most max_fragment bytes."""
    out = bytearray()
    for i in range(0, max(len(payload), 1), max_fragment):
        frag = payload[i:i + max_fragment]
        out += u8(ctype) + u16(version) + vec16(frag)
    return bytes(out)


def _share(group):
    """(private key, public bytes) for a key_share entry."""
    if group == "x25519":
        k = x25519.X25519PrivateKey.generate()
        return k, k.public_key().public_bytes(serialization.Encoding.Raw,
                                              serialization.PublicFormat.Raw)
    curve = {"secp256r1": ec.SECP256R1(), "secp384r1": ec.SECP384R1()}[group]
    k = ec.generate_private_key(curve)
    return k, k.public_key().public_bytes(serialization.Encoding.X962,
                                          serialization.PublicFormat.UncompressedPoint)


def _exchange(key, peer_public):
    if isinstance(key, x25519.X25519PrivateKey):
        return key.exchange(x25519.X25519PublicKey.from_public_bytes(peer_public))
    pub = ec.EllipticCurvePublicKey.from_encoded_point(key.curve, peer_public)
    return key.exchange(ec.ECDH(), pub)


class ClientHello:
    """A ClientHello for TLS 1.2 or 1.3 whose extensions are a plain list that
    tests may edit before encoding.

    exts: list of (type, body) tuples, or raw bytes inserted as they are
          (e.g. an extension whose length field lies).
    alpn: list of protocol names (None: no ALPN extension).
    alpn_raw: an ALPN extension body used as is (overrides alpn).
    key_shares: groups to send a key share for (TLS 1.3); [] sends an empty
          client_shares list, which makes the server answer with a
          HelloRetryRequest (RFC 8446 section 4.2.8).
    ticket: TLS 1.2 session_ticket extension contents (b"" asks for a ticket,
          None leaves the extension out).
    """

    def __init__(self, version="1.3", alpn=None, sni="test.example", alpn_raw=None,
                 session_id=None, groups=None, key_shares=None, ciphers=None, ticket=b"",
                 extra=(), random=None, ext_block=None):
        assert version in ("1.2", "1.3")
        self.version = version
        self.random = random or os.urandom(32)
        self.session_id = os.urandom(32) if session_id is None else session_id
        if ciphers is None:
            ciphers = [TLS13_AES_128_GCM_SHA256] if version == "1.3" else TLS12_SUITES
        self.ciphers = list(ciphers)
        if groups is None:
            groups = ["x25519"] if version == "1.3" else ["x25519", "secp256r1"]
        self.groups = list(groups)
        if key_shares is None:
            key_shares = [self.groups[0]] if version == "1.3" else []
        self.keys = {}
        shares = b""
        for g in key_shares:
            self.keys[g], pub = _share(g)
            shares += u16(GROUPS[g]) + vec16(pub)
        self.exts = []
        if sni is not None:
            self.exts.append((EXT_SERVER_NAME, sni_body(sni)))
        if alpn_raw is not None:
            self.exts.append((EXT_ALPN, alpn_raw))
        elif alpn is not None:
            self.exts.append((EXT_ALPN, alpn_body(alpn)))
        self.exts.append((EXT_SUPPORTED_GROUPS,
                          vec16(b"".join(u16(GROUPS[g]) for g in self.groups))))
        self.exts.append((EXT_SIGNATURE_ALGORITHMS, vec16(b"".join(u16(a) for a in SIG_ALGS))))
        if version == "1.3":
            self.exts.append((EXT_SUPPORTED_VERSIONS, vec8(u16(0x0304))))
            self.exts.append((EXT_KEY_SHARE, vec16(shares)))
            self.exts.append((EXT_PSK_KEY_EXCHANGE_MODES, vec8(u8(1))))
        else:
            self.exts.append((EXT_EC_POINT_FORMATS, vec8(u8(0))))
            self.exts.append((EXT_EXTENDED_MASTER_SECRET, b""))
            self.exts.append((EXT_RENEGOTIATION_INFO, vec8(b"")))
            if ticket is not None:
                self.exts.append((EXT_SESSION_TICKET, ticket))
        self.exts.extend(extra)
        self.ext_block = ext_block  # raw bytes replacing the whole extensions<> vector

    def encode(self):
        """The handshake message (type, length, body)."""
        if self.ext_block is not None:
            block = self.ext_block
        else:
            block = vec16(b"".join(e if isinstance(e, (bytes, bytearray)) else ext(*e)
                                   for e in self.exts))
        body = (u16(0x0303) + self.random + vec8(self.session_id)
                + vec16(b"".join(u16(c) for c in self.ciphers)) + vec8(u8(0)) + block)
        return handshake(HS_CLIENT_HELLO, body)

    def retry(self, hrr, alpn="same", alpn_raw=None):
        """The second ClientHello after the HelloRetryRequest hrr (a Flight):
        the same hello with a key share for the group the server asked for and
        its cookie (RFC 8446 section 4.1.2); optionally another ALPN list
        (None removes the extension)."""
        sh = hrr.server_hello
        group = GROUP_NAMES[struct.unpack("!H", sh.extensions[EXT_KEY_SHARE][:2])[0]]
        ch = ClientHello.__new__(ClientHello)
        ch.__dict__.update(self.__dict__)
        ch.keys = {}
        ch.keys[group], pub = _share(group)
        exts = []
        for e in self.exts:
            t = e[0] if isinstance(e, tuple) else None
            if t == EXT_KEY_SHARE:
                exts.append((EXT_KEY_SHARE, vec16(u16(GROUPS[group]) + vec16(pub))))
            elif t == EXT_ALPN and (alpn != "same" or alpn_raw is not None):
                continue
            else:
                exts.append(e)
        if alpn_raw is not None:
            exts.insert(1, (EXT_ALPN, alpn_raw))
        elif alpn not in ("same", None):
            exts.insert(1, (EXT_ALPN, alpn_body(alpn)))
        if EXT_COOKIE in sh.extensions:
            exts.append((EXT_COOKIE, sh.extensions[EXT_COOKIE]))
        ch.exts = exts
        return ch


# ---------------------------------------------------------------------------
# Decoding
class ServerHello:
    def __init__(self, raw):
        self.raw = raw  # the whole handshake message, for the transcript
        b = raw[4:]
        self.legacy_version = struct.unpack("!H", b[0:2])[0]
        self.random = b[2:34]
        n = b[34]
        self.session_id = b[35:35 + n]
        p = 35 + n
        self.cipher = struct.unpack("!H", b[p:p + 2])[0]
        p += 3  # cipher, compression
        self.extensions = parse_extensions(b[p:]) if p < len(b) else {}
        sv = self.extensions.get(EXT_SUPPORTED_VERSIONS)
        self.version = struct.unpack("!H", sv)[0] if sv else self.legacy_version

    @property
    def is_hrr(self):
        return self.random == HRR_RANDOM


def parse_extensions(block):
    """extensions<> vector -> {type: body} (a duplicate keeps the last)."""
    out = {}
    n = struct.unpack("!H", block[:2])[0]
    p, end = 2, 2 + n
    while p + 4 <= end:
        t, ln = struct.unpack("!HH", block[p:p + 4])
        out[t] = block[p + 4:p + 4 + ln]
        p += 4 + ln
    return out


def parse_alpn(body):
    """ProtocolNameList -> list of bytes."""
    out, p = [], 2
    while p < len(body):
        n = body[p]
        out.append(body[p + 1:p + 1 + n])
        p += 1 + n
    return out


def parse_certificate(body, tls13):
    """Certificate message body -> list of DER certificates."""
    p = 0
    if tls13:
        p = 1 + body[0]  # certificate_request_context
    end = p + 3 + int.from_bytes(body[p:p + 3], "big")
    p += 3
    out = []
    while p < end:
        n = int.from_bytes(body[p:p + 3], "big")
        out.append(body[p + 3:p + 3 + n])
        p += 3 + n
        if tls13:
            p += 2 + struct.unpack("!H", body[p:p + 2])[0]  # per-entry extensions
    return out


class Flight:
    """What the server sent in answer to one ClientHello."""

    def __init__(self):
        self.alert = None          # (level, description) of the first alert
        self.alert_encrypted = False
        self.closed = False        # EOF or reset seen
        self.reset = False
        self.timed_out = False
        self.server_hello = None
        self.messages = []         # (type, body): plaintext, or decrypted for TLS 1.3
        self.decrypted = False     # TLS 1.3: the encrypted part could be read
        self.error = None

    @property
    def hrr(self):
        return self.server_hello is not None and self.server_hello.is_hrr

    @property
    def alert_name(self):
        return None if self.alert is None else ALERTS.get(self.alert[1], str(self.alert[1]))

    def has(self, htype):
        return any(t == htype for t, _b in self.messages)

    def body(self, htype):
        for t, b in self.messages:
            if t == htype:
                return b
        return None

    @property
    def cert_request(self):
        return self.has(HS_CERTIFICATE_REQUEST)

    @property
    def alpn(self):
        """The protocol the server selected (str), or None."""
        if self.server_hello is None:
            return None
        body = self.server_hello.extensions.get(EXT_ALPN)
        ee = self.body(HS_ENCRYPTED_EXTENSIONS)
        if body is None and ee is not None:
            body = parse_extensions(ee).get(EXT_ALPN)
        if body is None:
            return None
        names = parse_alpn(body)
        return names[0].decode("latin-1") if names else ""

    @property
    def certificates(self):
        b = self.body(HS_CERTIFICATE)
        if b is None:
            return []
        return parse_certificate(b, self.server_hello.version == 0x0304)

    @property
    def refused(self):
        """An alert or a close before any ServerHello: the hello was refused."""
        return self.server_hello is None and (self.alert is not None or self.closed)

    def __repr__(self):
        sh = self.server_hello
        return ("<Flight alert=%s%s closed=%s reset=%s timed_out=%s sh=%s hrr=%s msgs=%s "
                "decrypted=%s alpn=%r error=%r>"
                % (self.alert_name, " (encrypted)" if self.alert_encrypted else "", self.closed,
                   self.reset, self.timed_out,
                   None if sh is None else "v%04x cipher %04x sid %d bytes" % (
                       sh.version, sh.cipher, len(sh.session_id)),
                   self.hrr, [t for t, _ in self.messages], self.decrypted, self.alpn,
                   self.error))


# ---------------------------------------------------------------------------
# TLS 1.3 key schedule (RFC 8446 section 7.1), SHA-256 only
def _hkdf_extract(salt, ikm):
    return hmac.new(salt, ikm, hashlib.sha256).digest()


def _hkdf_expand_label(secret, label, context, length):
    info = u16(length) + vec8(b"tls13 " + label) + vec8(context)
    out, t, i = b"", b"", 1
    while len(out) < length:
        t = hmac.new(secret, t + info + u8(i), hashlib.sha256).digest()
        out += t
        i += 1
    return out[:length]


def _derive_secret(secret, label, transcript):
    return _hkdf_expand_label(secret, label, hashlib.sha256(transcript).digest(), 32)


class _Decrypter:
    def __init__(self, shared, transcript):
        zero = b"\0" * 32
        early = _hkdf_extract(b"\0" * 32, zero)
        hs = _hkdf_extract(_derive_secret(early, b"derived", b""), shared)
        s_hs = _derive_secret(hs, b"s hs traffic", transcript)
        self.aead = AESGCM(_hkdf_expand_label(s_hs, b"key", b"", 16))
        self.iv = _hkdf_expand_label(s_hs, b"iv", b"", 12)
        self.seq = 0

    def open(self, header, payload):
        nonce = bytes(a ^ b for a, b in zip(self.iv, self.seq.to_bytes(12, "big")))
        self.seq += 1
        inner = self.aead.decrypt(nonce, payload, header).rstrip(b"\0")
        return inner[-1], inner[:-1]


# ---------------------------------------------------------------------------
class RawTLS:
    """A TCP connection to a TLS server driven by hand-built records."""

    def __init__(self, addr, timeout=5.0):
        self.sock = socket.create_connection(addr, timeout=timeout)
        self.local = self.sock.getsockname()
        self.buf = bytearray()
        self.eof = False
        self.transcript = b""
        self.dec = None
        self.hs_buf = bytearray()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data):
        self.sock.sendall(data)

    def _read_record(self, deadline):
        """(type, header, payload); None on EOF. Raises TimeoutError."""
        while True:
            if len(self.buf) >= 5:
                n = struct.unpack("!H", self.buf[3:5])[0]
                if len(self.buf) >= 5 + n:
                    header = bytes(self.buf[:5])
                    payload = bytes(self.buf[5:5 + n])
                    del self.buf[:5 + n]
                    return header[0], header, payload
            if self.eof:
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no complete record")
            self.sock.settimeout(left)
            try:
                d = self.sock.recv(65536)
            except socket.timeout:
                raise TimeoutError("no complete record")
            if not d:
                self.eof = True
            self.buf += d

    def _handshake_messages(self, data):
        """Feeds handshake bytes; yields complete (type, body, raw) messages."""
        self.hs_buf += data
        while len(self.hs_buf) >= 4:
            n = int.from_bytes(self.hs_buf[1:4], "big")
            if len(self.hs_buf) < 4 + n:
                return
            raw = bytes(self.hs_buf[:4 + n])
            del self.hs_buf[:4 + n]
            yield raw[0], raw[4:], raw

    def hello(self, ch, timeout=3.0, record_version=0x0301, max_fragment=16384):
        """Sends the ClientHello ch (a ClientHello, or the raw handshake
        message bytes) and reads the server's answer: up to ServerHelloDone
        (1.2), the HelloRetryRequest, or the encrypted flight up to Finished
        (1.3), or an alert, EOF, reset or the timeout."""
        msg = ch.encode() if isinstance(ch, ClientHello) else ch
        f = Flight()
        try:
            self.send(records(CT_HANDSHAKE, msg, record_version, max_fragment))
        except OSError as e:
            f.error, f.closed = e, True
            return f
        self.transcript += msg
        deadline = time.monotonic() + timeout
        try:
            while True:
                rec = self._read_record(deadline)
                if rec is None:
                    f.closed = True
                    return f
                ctype, header, payload = rec
                if ctype == CT_CCS:
                    continue
                if ctype == CT_APPDATA and self.dec is not None:
                    try:
                        ctype, payload = self.dec.open(header, payload)
                    except Exception as e:  # noqa: BLE001 - cryptography's InvalidTag
                        f.error = e
                        return f
                    if ctype == CT_ALERT:
                        f.alert_encrypted = True
                if ctype == CT_ALERT:
                    f.alert = (payload[0], payload[1]) if len(payload) >= 2 else (2, -1)
                    return f
                if ctype != CT_HANDSHAKE:
                    f.error = "unexpected record type %d" % ctype
                    return f
                for htype, body, raw in self._handshake_messages(payload):
                    if htype == HS_SERVER_HELLO and f.server_hello is None:
                        f.server_hello = sh = ServerHello(raw)
                        if sh.is_hrr:
                            # RFC 8446 section 4.4.1: CH1 becomes message_hash.
                            self.transcript = (handshake(HS_MESSAGE_HASH,
                                                         hashlib.sha256(self.transcript).digest())
                                               + raw)
                            return f
                        self.transcript += raw
                        if sh.version == 0x0304 and isinstance(ch, ClientHello):
                            ks = sh.extensions.get(EXT_KEY_SHARE)
                            group = GROUP_NAMES.get(struct.unpack("!H", ks[:2])[0])
                            if group in ch.keys and sh.cipher == TLS13_AES_128_GCM_SHA256:
                                shared = _exchange(ch.keys[group], ks[4:])
                                self.dec = _Decrypter(shared, self.transcript)
                                f.decrypted = True
                            else:
                                return f
                        continue
                    f.messages.append((htype, body))
                    if htype in (HS_SERVER_HELLO_DONE, HS_FINISHED):
                        return f
        except TimeoutError:
            f.timed_out = True
        except ConnectionResetError as e:
            f.closed = f.reset = True
            f.error = e
        except OSError as e:
            f.closed = True
            f.error = e
        return f

    def read_plain_handshake(self, until=HS_SERVER_HELLO_DONE, timeout=3.0):
        """Reads plaintext handshake records (after sending something by hand)
        until a message of type `until`, a non-handshake record, EOF or the
        timeout. Returns the message types seen."""
        types = []
        deadline = time.monotonic() + timeout
        try:
            while until not in types:
                rec = self._read_record(deadline)
                if rec is None or rec[0] != CT_HANDSHAKE:
                    break
                types += [m[0] for m in self._handshake_messages(rec[2])]
        except (TimeoutError, OSError):
            pass
        return types

    def wait_closed(self, timeout=3.0):
        """Reads (and drops) until EOF; True if the server closed in time."""
        deadline = time.monotonic() + timeout
        try:
            while self._read_record(deadline) is not None:
                pass
            return True
        except TimeoutError:
            return False
        except OSError:
            return True


def exchange(addr, ch, timeout=3.0, **kw):
    """One ClientHello on a fresh connection; returns (Flight, local address)."""
    with RawTLS(addr, timeout=timeout) as t:
        f = t.hello(ch, timeout=timeout, **kw)
        return f, t.local
