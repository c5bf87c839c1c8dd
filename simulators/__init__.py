"""A seeded synthetic country, a visit generator, and hospitals that talk to the platform
only through Kafka topics, as real hospital information systems (HIS) do."""
