"""The poller process: the receive loop, its SQS port, its runner, metrics and health."""
