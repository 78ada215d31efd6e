"""Alerts: each user's rules (price, move, indicator, volume, whale), evaluated per stored batch, and their firings."""
