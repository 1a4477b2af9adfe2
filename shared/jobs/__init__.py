"""Jobs: their states, the store that moves them, job types, params and the write path."""
