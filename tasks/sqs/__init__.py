"""SQS from the task side: batch limits and the dead-letter queue."""
