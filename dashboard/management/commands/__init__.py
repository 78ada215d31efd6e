"""``check_stack`` and ``ensure_demo_user``."""
