"""The reference consumers bwp-worker is measured against, each a script of its own.

They read the contract's environment variables (the same bwp-worker gets), count their
SQS requests with a botocore hook, and write those counts to ``--counts`` when they exit.
"""
