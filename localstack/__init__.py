"""Real services started on this machine for development, tests and ``make run``: Kafka and Triton."""

from .kafka import KafkaStartError, LocalKafka, LocalKafkaCluster
from .process import free_port
from .triton import LocalTriton, TritonStartError

__all__ = ["KafkaStartError", "LocalKafka", "LocalKafkaCluster", "LocalTriton", "TritonStartError", "free_port"]
