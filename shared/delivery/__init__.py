"""Delivery: the Celery app, publishing ids to the broker, and the reconciler."""
