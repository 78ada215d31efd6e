"""The web front: dashboard pages, the REST API, live WebSocket pushes and whale-alert delivery."""
