"""Model serving: backends behind one protocol, and the Triton model-repository writer."""
