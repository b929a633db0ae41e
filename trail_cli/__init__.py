"""The ``trail`` command: the composition root that wires each stage's verbs into one CLI."""
