"""catal workers: the science (model, MD sampling, DFT) and the Ray actors that run it."""
