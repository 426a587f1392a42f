# ketch behind haproxy.cfg: every connection from HAProxy (127.0.0.1 here; its
# address or subnet otherwise) must begin with a PROXY header; TLS follows it
ketch main:app --host 127.0.0.1 --port {{ketch_port}} --proxy-protocol --forwarded-allow-ips 127.0.0.1 --ssl-certfile {{certfile}} --ssl-keyfile {{keyfile}}
