"""Delivery of outbox events: the webhook and email senders and the worker that runs them.

The database side (fan-out, leases, retries, dead letters) is models.delivery; this package
does the I/O, always outside a database transaction and never inside a request.
"""
