"""Kafka, through Faust: the consumer that hands whole fetches over, the hand-off to the
agent, the worker's producers and topics, and the one module of private names
(``compat``)."""
