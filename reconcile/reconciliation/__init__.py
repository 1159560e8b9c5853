"""Reconciliation: expected against processed, results, breaks, failures, exports."""
