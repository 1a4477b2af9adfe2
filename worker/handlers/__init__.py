"""Job handlers: ``handler(ctx, params) -> result``; model code is imported inside them."""
