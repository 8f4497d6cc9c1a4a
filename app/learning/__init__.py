"""Learning, pure and synchronous (no Faust): a partition's test-then-train, the guard
that keeps a record from poisoning a model, the partitions' registry, fast copies, and
River's private names (``river_compat``)."""
