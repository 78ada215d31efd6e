"""Price-direction models: features from stored candles, walk-forward training, live inference and scoring."""
