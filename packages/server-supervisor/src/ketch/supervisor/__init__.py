"""ketch-supervisor: workers, auto-reload and the gunicorn worker classes for ketch."""
