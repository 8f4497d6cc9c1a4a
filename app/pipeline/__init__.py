"""The event's path: a fetch, decoded and batched by partition, through the learner, to
its outputs (predictions, dead letters, drift records), with the poison-pill quarantine."""
