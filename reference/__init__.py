"""The recipe, the classic CIFAR ResNets and Keller Jordan's airbench recipes written a second
time, independently of `tf_resnet9` (nothing imported from it), in plain PyTorch.

The parity tests (tests/parity) compare the package with them number by number; the PyTorch
baseline benchmark (benchmarks/reference_torch.py) times the recipe. Needs torch.
"""
