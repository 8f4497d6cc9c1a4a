"""Developer tools, not the stream engine: the local broker, produce, tail, the demo."""
