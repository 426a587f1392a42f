# ketch with HTTP/2 on, on the loopback interface only: HAProxy's h2c
# connections open with the HTTP/2 preface and are served as HTTP/2
ketch main:app --http2 --host 127.0.0.1 --port {{ketch_port}}
