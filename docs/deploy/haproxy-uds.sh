# ketch behind haproxy-uds.cfg: its socket's path is the peer trusted to send
# the PROXY header; every worker reads it
ketch main:app --uds {{socket_path}} --proxy-protocol --forwarded-allow-ips {{socket_path}} --workers 2
