"""Every state change, as one command each: the rules, the write, and everything told about it.

A command is ``async def verb(services, actor, record) -> result``: it
takes the `umoc.domain.services.Services` of the node, the
`umoc.records.Actor` asking, and one frozen record from ``umoc.records``
that has validated itself.  It checks what the actor may do, calls one
store method with the record (the write, its feed row and its counters in
one transaction), then tells everyone concerned: sockets through
``services.hub.tell`` with a notice from ``umoc.domain.notices``, push and
webhooks.  It returns what the asking edge answers with.

The edges only parse and call: a socket handler (``umoc.events``), the
HTTP edges (``umoc.web``: bots, admin), ``umoc-admin`` and the server API
build the record and call the same command, so every path emits the same
events, feed rows and webhooks.  Nothing outside this package calls
``services.hub``, ``services.push`` or ``services.webhooks`` for a change.

One module per area, named for it (``messages``, ``reactions``,
``contacts``, ``groups``, ``profiles``, ``push``, ``account``, ...);
a new command goes in its area's module, a new area gets its own.
"""
