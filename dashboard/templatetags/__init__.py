"""Template filters of the dashboard's pages."""
