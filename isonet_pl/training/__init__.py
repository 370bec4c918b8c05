"""Training pieces of refine: subtomograms, estimates and refill, callbacks, devices, resume, progress."""
