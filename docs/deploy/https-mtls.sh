# Only clients with a certificate signed by your CA get in: --ssl-cert-reqs 2
# is ssl.CERT_REQUIRED, --ssl-ca-certs the CA that signs the clients' certificates
ketch main:app --host {{host}} --port {{port}} --ssl-certfile {{certfile}} --ssl-keyfile {{keyfile}} --ssl-cert-reqs 2 --ssl-ca-certs {{client_ca}}
