"""The demo: a scripted story played on the sandbox stack, and its report."""
