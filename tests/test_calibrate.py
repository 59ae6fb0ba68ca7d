"""WAVE calibration (a new size's scalers learned with the templates frozen) measures top-1 on the split it is
given."""

import torch
from conftest import tiny_gene
from test_teacher_cache import toy_data

from lgtool.family import resize_gene, target_arch
from lgtool.materialize import build_aux
from lgtool.training.calibrate import calibrate
from lgtool.training.loop import evaluate
from lgtool.training.view import View


class Watched:
    """A split that counts the passes over it."""

    def __init__(self, split):
        self.split, self.passes = split, 0

    def batches(self, *args, **kwargs):
        self.passes += 1
        return self.split.batches(*args, **kwargs)


def test_calibrate_measures_before_and_after_on_the_split_it_is_given():
    gene, data = tiny_gene("wave"), toy_data()
    target = target_arch(gene, depth=3)
    held_out = Watched(data.train.subset(torch.arange(8, 24)))
    calibrated, info = calibrate(gene, target, dataset=data, steps=2, batch_size=16, evaluate_on=held_out)
    assert held_out.passes == 2 and info["steps"] == 2
    view = View.from_input_cfg(gene.meta.input.model_dump(), target.img_size, target.in_chans)
    assert info["top1_before"] == evaluate(build_aux(resize_gene(gene, target)), held_out.split, view)
    assert info["top1_after"] == evaluate(build_aux(calibrated), held_out.split, view)
