"""The offline stage: dataset adapters, example building, fine-tuning, evaluation, export."""
