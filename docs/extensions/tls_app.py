"""Who is connected: the client certificate of a TLS connection (the `tls` extension).

    ketch tls_app:app --ssl-certfile cert.pem --ssl-keyfile key.pem \
        --ssl-cert-reqs required --ssl-ca-certs clients-ca.pem
"""


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    tls = scope.get("extensions", {}).get("tls")
    if tls is None:
        status, text = 400, "Use https://\n"
    elif tls["client_cert_name"] is None:
        status, text = 403, "No client certificate\n"
    else:
        # client_cert_chain[0] is the same certificate in PEM, for any x509 library
        status, text = 200, f"Hello, {tls['client_cert_name']} (TLS {tls['tls_version']:#06x})\n"
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": text.encode()})
