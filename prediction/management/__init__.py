"""Management commands of the prediction app."""
