"""Management commands of the simulator app."""
