"""``train_model``."""
