"""``python -m bench``: the whole benchmark suite against the real stack."""

from bench.run import main

main()
