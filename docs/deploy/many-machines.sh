# on every machine behind the load balancer: listen where nginx can reach it,
# trust only the load balancer's address with proxy headers
ketch main:app --host {{host}} --port {{port}} --workers 2 --forwarded-allow-ips {{balancer}} --timeout-graceful-shutdown 20
