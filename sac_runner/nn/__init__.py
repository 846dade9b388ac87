"""Networks, distributions, activations (one table, hand-derived passes beside them in backprop.py) and encoders."""
