# gunicorn with ketch's worker class. Run it with
#   gunicorn -c gunicorn.conf.py main:app
# and fill in {{port}}, {{certfile}} and {{keyfile}}.
bind = "127.0.0.1:{{port}}"
workers = 4
worker_class = "ketch.supervisor.gunicorn.KetchWorker"  # or KetchH11Worker: pure Python
graceful_timeout = 20  # ketch's --timeout-graceful-shutdown
keepalive = 5  # ketch's --timeout-keep-alive
certfile = "{{certfile}}"
keyfile = "{{keyfile}}"
