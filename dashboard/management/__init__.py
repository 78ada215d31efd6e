"""Management commands of the dashboard app."""
