"""Simulation: counterfactual scenarios over the churn model, with effects estimated from randomized
campaigns where the data allows and assumed (and said so) where it does not."""
