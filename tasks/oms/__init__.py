"""The merchant's order management system: the push body and the client that sends it."""
