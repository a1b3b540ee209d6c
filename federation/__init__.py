"""Everything the aggregator runs: the ServerApp, aggregation, the metrics store, the
coordinator and analyst CLIs. May import ``models``; never ``node``."""
