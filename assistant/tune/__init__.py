"""Fine-tuning on the user's own data: the training set, the trainer, the evaluation."""
