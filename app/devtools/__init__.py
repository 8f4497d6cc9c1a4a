"""Developer tools, not the stream engine: the local broker, produce, tail, the demo, and
the offline replay that predictions are checked against."""
