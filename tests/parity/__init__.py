"""Parity of tf_resnet9 with an independent PyTorch reference of the recipe (see README.md)."""
