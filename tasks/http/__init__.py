"""Calling over HTTP: in-call retries (tenacity) and a total deadline per call and per task."""
