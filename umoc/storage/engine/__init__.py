"""The storage engine, apart from the stores: dialects, transactions, the pool, migrations.

``umoc.storage.database`` builds a `Database` from these (the pool, its
deadlines, the group commit of ``umoc.storage.batching``) and is what the
stores import; nothing here knows a table but the migrations' own.

* ``dialect``: what differs between SQLite and PostgreSQL, said once.
* ``txn``: `Txn` over a cursor, rows by column name, ``in_clause``.
* ``pool``: adbapi's threads with deadlines, keepalives and health.
* ``migrations``: the numbered schema files, applied once each.
"""
