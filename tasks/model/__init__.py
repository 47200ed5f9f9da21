"""Value types that several layers share (the delivery sync, the ledger, the OMS push).

A leaf: it imports nothing of ``tasks`` but the event catalog, so any layer can use it.
"""
