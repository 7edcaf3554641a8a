"""The Socket.IO edge: payload schemas, the one route table, thin handlers per domain.

`umoc.events.routes` joins every handler module's ``ROUTES``; importing a
single module (``umoc.records.schema``) loads nothing else.
"""
