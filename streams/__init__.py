"""Faust stream processors: thin wiring of the settlement roles onto Kafka topics."""
