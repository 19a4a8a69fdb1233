"""Optimizers for populations (a member dimension K in front of every parameter)."""
