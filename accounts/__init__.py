"""User accounts: sign-up and invitations, hashed API tokens, watchlists, quotas and ownership (docs/ACCOUNTS.md)."""
