"""Operating the stack: the process launcher and supervisor, the `aigc` CLI and its client."""
