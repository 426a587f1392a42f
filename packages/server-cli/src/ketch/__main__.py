"""`python -m ketch`: the same as the `ketch` command."""

from ketch.cli.main import main

main()
