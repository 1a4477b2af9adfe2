"""Observability: metric export, queue depth, the fleet's announcements, and structured logs.

- ``export``: the registry a process exposes (its own, or its family's in multiprocess mode).
- ``depth``: messages per lane in the broker and waiting rows per lane and tenant.
- ``fleet``: workers announce themselves; ``build_fleet`` assembles ``GET /v1/fleet``.
- ``logs``: text or JSON lines, with the running job's fields on every line.
"""
