# Only clients with a certificate signed by your CA get in: --ssl-ca-certs is
# the CA that signs the clients' certificates
ketch main:app --host {{host}} --port {{port}} --ssl-certfile {{certfile}} --ssl-keyfile {{keyfile}} --ssl-cert-reqs required --ssl-ca-certs {{client_ca}}
