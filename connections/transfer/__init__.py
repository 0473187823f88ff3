"""Moving connection definitions between portals: a JSON document (its
format and JSON Schema in ``format``), written by ``export`` and brought in
by ``import_`` (a plan first, then all of it or nothing). Credentials never
move: imported connections are Not yet connected until someone
authenticates them. See docs/transfer.md."""
