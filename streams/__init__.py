"""The streaming stage: Kafka topics, the Faust app and the CLI's stream verbs."""
