"""Route accounting in FLOPs on hand-made rows: the best alternative per size, '>' sizes, the recommendation."""

import pytest

from lgtool.bench.cost import family_cost, learn_flops, recommend, row_flops

FLOPS = {"teacher": 100, "d2-w64": 10, "d4-w64": 20, "d6-w64": 30, "d8-w64": 40}
LEARNED = {"tleg": {"images": 300, "teacher_images": 300, "aux_size": "d8-w64"}}  # 3*300*40 + 300*100 = 66,000


def row(depth, init, epochs, val, images=100, teacher=0, calibration=0):
    return dict(
        depth=depth, width=64, init=init, epochs=epochs, val_top1=val, top1=val - 0.01,
        train_images=images, teacher_images=teacher, calibration_images=calibration,
    )  # fmt: skip


ROWS = [
    # d2: weight selection matches at one epoch, cheaper than scratch at 4 and than weight selection + KD
    row(2, "tleg", 1, 0.80),
    row(2, "scratch", 1, 0.70),
    row(2, "scratch", 2, 0.78, 200),
    row(2, "scratch", 4, 0.82, 400),
    row(2, "weight-selection", 1, 0.81),
    row(2, "weight-selection+kd", 1, 0.85, teacher=100),
    # d4: nobody matches: the cheapest of the furthest runs is a lower bound
    row(4, "tleg", 1, 0.85),
    row(4, "scratch", 1, 0.72),
    row(4, "scratch", 2, 0.75, 200),
    row(4, "kd-scratch", 1, 0.70, teacher=100),
    # d6: no alternative ran: in neither route
    row(6, "tleg", 1, 0.88),
    # d8: only scratch can make it (weight selection skipped)
    row(8, "tleg", 1, 0.90),
    row(8, "scratch", 1, 0.91),
    dict(depth=8, width=64, init="weight-selection", epochs=1, skipped="the ancestor is too narrow"),
]


def test_row_flops_student_steps_are_three_forwards_and_teacher_forwards_their_own():
    assert row_flops(row(2, "scratch", 1, 0.7), FLOPS) == 3 * 100 * 10
    assert row_flops(row(4, "kd-scratch", 1, 0.7, teacher=100), FLOPS) == 3 * 100 * 20 + 100 * 100
    assert row_flops(row(4, "wave", 1, 0.7, calibration=50), FLOPS) == 3 * 150 * 20


def test_learning_is_charged_its_steps_its_teacher_and_the_ordering_of_its_channels():
    assert learn_flops(LEARNED["tleg"], FLOPS) == 66_000
    ordered = {**LEARNED["tleg"], "ordering_images": 50}  # scored at the Aux size, a forward and a backward each
    assert learn_flops(ordered, FLOPS) == 66_000 + 3 * 50 * 40
    assert family_cost(ROWS, {"tleg": ordered}, FLOPS, epochs=1)["tleg"]["learn_flops"] == 66_000 + 6000


def test_family_cost_against_the_best_alternative_and_scratch_alone():
    best = family_cost(ROWS, LEARNED, FLOPS, epochs=1)["tleg"]
    assert best["alternative_per_size"] == {
        "d2-w64": "weight-selection@1",
        "d4-w64": "scratch@2 (>)",
        "d8-w64": "scratch@1",
    }
    assert best["learn_flops"] == 66_000 and best["sizes_flops"] == 3000 + 6000 + 12_000  # d6 is in neither route
    assert best["route_flops"] == 87_000 and best["alternative_flops"] == 3000 + 12_000 + 12_000
    assert best["ratio_flops"] == pytest.approx(27_000 / 87_000, abs=0.005) and best["exact"] is False
    assert (best["route_images"], best["alternative_images"]) == (300 + 300, 100 + 200 + 100)
    scratch = family_cost(ROWS, LEARNED, FLOPS, epochs=1, alternatives=("scratch",))["tleg"]
    assert scratch["alternative_per_size"]["d2-w64"] == "scratch@4" and scratch["alternative_flops"] == 36_000
    # a learngene whose learning cost is unknown has no ratio rather than a flattering one
    unknown = family_cost(ROWS, {"tleg": {"images": None, "aux_size": "d8-w64"}}, FLOPS, epochs=1)["tleg"]
    assert unknown["ratio_flops"] is None and unknown["route_flops"] is None


def test_recommendation_per_size_charges_a_share_of_learning():
    rec = recommend(ROWS, LEARNED, FLOPS, epochs=1)
    share = 66_000 / 4  # the learngene makes four sizes
    assert rec["d2-w64"]["route"] == "weight-selection@1" and rec["d2-w64"]["flops"] == 3000
    assert rec["d4-w64"] == {
        "route": "tleg@1", "flops": int(share + 6000), "val_top1": 0.85, "top1": 0.84, "target_val_top1": 0.85,
    }  # fmt: skip
    assert rec["d6-w64"]["route"] == "tleg@1" and rec["d6-w64"]["flops"] == int(share + 9000)
    assert rec["d8-w64"]["route"] == "scratch@1" and rec["d8-w64"]["flops"] == 12_000


def test_a_learngene_size_is_used_as_expanded_where_that_scores_within_the_margin_of_its_epoch():
    def tuned(depth, val, at_init):  # a fine-tuned learngene row, with what it scored before its epoch
        return {**row(depth, "tleg", 1, val), "val_at_init": at_init, "top1_at_init": at_init - 0.01}

    rows = [
        # d2: as expanded it scores 0.82, within 0.03 of its epoch's 0.84: used as expanded, whatever the others do;
        # weight selection then has to reach 0.82 - 0.03 and does in one epoch
        tuned(2, 0.84, 0.82),
        row(2, "weight-selection", 1, 0.81),
        row(2, "weight-selection", 2, 0.845, 200),
        # d4: as expanded it is far behind its epoch: fine-tuned; scratch needs 4 epochs to come within 0.03
        tuned(4, 0.86, 0.30),
        row(4, "scratch", 1, 0.40),
        row(4, "scratch", 4, 0.87, 400),
    ]
    cost = family_cost(rows, LEARNED, FLOPS, epochs=1, margin=0.03)["tleg"]
    assert cost["epochs_per_size"] == {"d2-w64": 0, "d4-w64": 1}
    assert cost["alternative_per_size"] == {"d2-w64": "weight-selection@1", "d4-w64": "scratch@4"}
    assert cost["sizes_flops"] == 0 + 3 * 100 * 20  # the d2 fine-tune is not paid
    assert cost["alternative_flops"] == 3 * 100 * 10 + 3 * 400 * 20
    assert cost["route_images"] == 300 + 100
    # with no margin the epoch's 0.02 is worth having: fine-tuned at both sizes, and weight selection needs 2 epochs
    strict = family_cost(rows, LEARNED, FLOPS, epochs=1)["tleg"]
    assert strict["epochs_per_size"] == {"d2-w64": 1, "d4-w64": 1}
    assert strict["alternative_per_size"]["d2-w64"] == "weight-selection@2"
    # a bench at 0 epochs, or rows without their 0-epoch numbers, have one budget only: as before
    plain = family_cost([{**r, "val_at_init": None} for r in rows], LEARNED, FLOPS, epochs=1, margin=0.03)["tleg"]
    assert plain["epochs_per_size"] == {"d2-w64": 1, "d4-w64": 1}
