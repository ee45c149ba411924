"""Stages: each maps an iterator of records to an iterator of kept records and `Dropped` ones."""
