"""The event's way out: the thin agent, the processor (records in, outputs out), the
metrics, their records on the metrics topic, and the HTTP views."""
