"""One training loop for `learn` (distil an Aux-Net from an ancestor), WAVE calibration and `finetune`.

`train.py` is the loop, `fit`; `checkpoint.py` is what a checkpoint holds and how it is written and read back.
"""

from lgtool.format.interrupt import Interrupted
from lgtool.training.loop.train import Dist, Diverged, TrainConfig, evaluate, fit

__all__ = ["TrainConfig", "fit", "evaluate", "Interrupted", "Diverged", "Dist"]
