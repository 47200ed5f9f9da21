"""The Buy with Prime order API: client, query texts, shared OAuth token, rate limit."""
