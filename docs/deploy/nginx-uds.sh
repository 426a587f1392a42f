# ketch on the UNIX socket that nginx-uds.conf proxies to; the socket's path is
# the one peer trusted with proxy headers
ketch main:app --uds {{socket_path}} --forwarded-allow-ips {{socket_path}}
