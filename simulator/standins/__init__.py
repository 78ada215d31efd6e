"""Local stand-ins for the messaging APIs the alert channels call (Twilio, Telegram), as the exchange simulator is for
the exchanges: same request layout, auth and error answers, keeping every message they accepted."""
