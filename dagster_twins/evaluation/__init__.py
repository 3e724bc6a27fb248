"""Evaluations of the models against data no model reads: the demo's planted truth, a public transaction log."""
