"""Every setting of a run: `TrainConfig` (`train_config`: default, unit, help and check of
each), the recipes that set their defaults (`recipes`), the command-line flags made from
them (`flags`), and what the unset ones become on this machine (`settings`). Importing
this package starts no Keras."""

from tf_resnet9.config.train_config import TrainConfig

__all__ = ["TrainConfig"]
