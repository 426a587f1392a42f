# behind a CDN and nginx on this machine: trust nginx and the CDN's edge
# networks with proxy headers, and mark every response that does not say
# otherwise as not cacheable
FORWARDED_ALLOW_IPS="127.0.0.1,{{cdn_networks}}" ketch main:app --port {{port}} --header "Cache-Control: private, no-store"
