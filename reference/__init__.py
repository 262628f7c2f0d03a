"""The recipe written a second time, independently of `tf_resnet9`, in plain PyTorch.

The parity tests (tests/parity) compare the package with it number by number; the PyTorch
baseline benchmark (benchmarks/reference_torch.py) times it. Needs torch.
"""
