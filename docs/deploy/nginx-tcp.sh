# ketch on the loopback interface only; 127.0.0.1 is trusted with proxy headers
# by default (--forwarded-allow-ips 127.0.0.1,::1)
ketch main:app --host 127.0.0.1 --port {{ketch_port}}
