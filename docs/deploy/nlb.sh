# ketch behind an AWS Network Load Balancer. Its target group (targets registered
# by IP address, TCP) writes a PROXY v2 header, and keeps its own address as the
# peer so that ketch can trust it:
#   aws elbv2 modify-target-group-attributes --target-group-arn ARN \
#     --attributes Key=proxy_protocol_v2.enabled,Value=true Key=preserve_client_ip.enabled,Value=false
# {{subnets}}: the load balancer's subnets (its nodes' private addresses), e.g. 10.0.0.0/16
ketch main:app --host {{host}} --port {{port}} --proxy-protocol --forwarded-allow-ips {{subnets}}
