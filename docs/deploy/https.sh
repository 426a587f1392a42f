# HTTPS: the certificate chain and its private key
ketch main:app --host {{host}} --port {{port}} --ssl-certfile {{certfile}} --ssl-keyfile {{keyfile}}

# an encrypted key: its password on the command line...
ketch main:app --host {{host}} --port {{port}} --ssl-certfile {{certfile}} --ssl-keyfile {{keyfile}} --ssl-keyfile-password "{{password}}"

# ...or, better, in the environment, where `ps` does not show it to every user
KETCH_SSL_KEYFILE_PASSWORD="{{password}}" ketch main:app --host {{host}} --port {{port}} --ssl-certfile {{certfile}} --ssl-keyfile {{keyfile}}
