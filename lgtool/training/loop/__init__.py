"""One training loop for `learn` (distil an Aux-Net from an ancestor), WAVE calibration and `finetune`.

`train.py` is the loop, `fit`, read top to bottom as nanoGPT's train.py reads: setup, the schedule, the step,
evaluation at each epoch end, a checkpoint. `checkpoint.py` is what a checkpoint holds (`Position`: where
training stands) and how it is written and read back; `distributed.py` is this process's rank and device.
"""

from lgtool.base.interrupt import Interrupted
from lgtool.training.loop.checkpoint import Position
from lgtool.training.loop.distributed import Dist
from lgtool.training.loop.train import Diverged, TrainConfig, evaluate, fit

__all__ = ["TrainConfig", "fit", "evaluate", "Interrupted", "Diverged", "Dist", "Position"]
