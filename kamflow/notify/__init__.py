"""Email notifications: messages, transports, and the outbox that delivers them."""
