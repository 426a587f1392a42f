"""The ASGI `tls` extension (version 0.2): what a TLS connection tells the app.

Computed once per connection, when it is made (`connection_info()`), from
the standard library's `ssl.SSLObject` (asyncio's and uvloop's TLS both use
it); every request of the connection shares the result. The server's own
certificate cannot be read back from an `ssl.SSLContext`, so the server reads
it once from `--ssl-certfile` (`server_certificate()`).
"""

from __future__ import annotations

import os
import re
import ssl
from typing import Any

# The TLS protocol versions as the specifications number them (0x0304 is TLS 1.3)
TLS_VERSIONS = {"TLSv1.3": 0x0304, "TLSv1.2": 0x0303, "TLSv1.1": 0x0302, "TLSv1": 0x0301}

# RFC 4514 3: the attribute types written by a short name; any other is
# written as its dotted OID (as the `cryptography` library writes them too)
_RFC4514_NAMES = {
    "commonName": "CN",
    "localityName": "L",
    "stateOrProvinceName": "ST",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "countryName": "C",
    "streetAddress": "STREET",
    "domainComponent": "DC",
    "userId": "UID",
}
_ESCAPED = re.compile(r'(["+,;<>\\])')
_PEM_CERTIFICATE = re.compile(
    r"-----BEGIN CERTIFICATE-----\s.*?-----END CERTIFICATE-----", re.DOTALL
)
# OpenSSL cipher names to their IANA numbers, filled from the first context seen
_CIPHER_IDS: dict[str, int] = {}


def tls_extension(ssl_object: ssl.SSLObject, server_cert: str | None) -> dict[str, Any]:
    """The `scope["extensions"]["tls"]` dict of one TLS connection."""
    chain: tuple[str, ...] = ()
    name: str | None = None
    leaf = ssl_object.getpeercert(binary_form=True)
    if leaf:
        ders = [leaf]
        # Python 3.13+ reads the whole chain the client sent (its certificate first)
        unverified = getattr(ssl_object, "get_unverified_chain", None)
        if unverified is not None:
            sent = list(unverified())
            ders = sent if sent[:1] == [leaf] else [leaf, *sent]
        chain = tuple(ssl.DER_cert_to_PEM_cert(der) for der in ders)
        # (the parsed form exists only for a verified certificate: ketch refuses
        # the handshake when verification fails, so every certificate here is)
        subject = (ssl_object.getpeercert() or {}).get("subject")
        if subject is not None:
            name = rfc4514_name(subject)
    cipher = ssl_object.cipher()
    version = ssl_object.version()
    return {
        "server_cert": server_cert,
        "client_cert_chain": chain,
        "client_cert_name": name,
        # a certificate that fails verification fails the handshake, so the
        # app never sees one: there is no error to report
        "client_cert_error": None,
        "tls_version": TLS_VERSIONS.get(version) if version else None,
        "cipher_suite": _cipher_id(ssl_object, cipher[0]) if cipher else None,
    }


def rfc4514_name(subject: Any) -> str:
    """A certificate subject, as `ssl.SSLObject.getpeercert()` gives it (a tuple
    of RDNs, each a tuple of (attribute, value) pairs), written as RFC 4514
    says: the last RDN first, `+` between the attributes of one RDN."""
    return ",".join(
        "+".join(f"{_attribute_type(kind)}={_escape(value)}" for kind, value in rdn)
        for rdn in reversed(subject)
    )


def _attribute_type(name: str) -> str:
    short = _RFC4514_NAMES.get(name)
    if short is not None:
        return short
    try:  # OpenSSL's long name (emailAddress) to its OID (1.2.840.113549.1.9.1)
        return str(ssl._ASN1Object.fromname(name).oid)
    except (ValueError, AttributeError):  # already an OID, or an unknown name
        return name


def _escape(value: str) -> str:
    """RFC 4514 2.4: special characters, a leading '#' or space, a trailing space, NUL."""
    if not value:
        return value
    escaped = _ESCAPED.sub(r"\\\1", value).replace("\0", "\\00")
    if value[0] in "# ":
        escaped = "\\" + escaped
    if value[-1] == " " and len(value) > 1:
        escaped = escaped[:-1] + "\\ "
    return escaped


def _cipher_id(ssl_object: ssl.SSLObject, name: str) -> int | None:
    number = _CIPHER_IDS.get(name)
    if number is None:
        context = ssl_object.context
        if context is not None:
            for cipher in context.get_ciphers():
                # OpenSSL's id is 0x0300XXXX; XXXX is the IANA number (RFC 8446 B.4)
                _CIPHER_IDS[cipher["name"]] = cipher["id"] & 0xFFFF
        number = _CIPHER_IDS.get(name)
    return number


def server_certificate(certfile: str | os.PathLike[str] | None) -> str | None:
    """The PEM of the first certificate of `--ssl-certfile` (the server's own;
    the rest of the file is its chain), or None when there is none to read."""
    if not certfile:
        return None
    try:
        with open(certfile, encoding="ascii", errors="replace") as file:
            text = file.read()
    except OSError:
        return None
    found = _PEM_CERTIFICATE.search(text)
    if found is None:
        return None
    try:  # written the way the client's certificates are (64-character lines)
        return ssl.DER_cert_to_PEM_cert(ssl.PEM_cert_to_DER_cert(found.group()))
    except ValueError:
        return None
