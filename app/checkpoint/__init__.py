"""Durability: signed, offset-stamped snapshots and the checkpoint that commits up to
them (``snapshots``), and what each assignment restores (``recovery``)."""
