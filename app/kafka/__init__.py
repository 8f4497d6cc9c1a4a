"""Kafka, through Faust: the consumer that hands whole fetches over, the hand-off to the
agent, the worker's producers and topics, every other Kafka client (``clients``), and the
one module of Faust's, mode's and aiokafka's private names (``compat``)."""
