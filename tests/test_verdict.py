"""The bench's verdict on hand-made rows: the tie margin, the learngene's budget fixed before the race, the verdict
word from the interval over seeds, break-even worked out by hand, and that no choice reads the test split."""

import copy

import pytest

from lgtool.bench.cost import family_cost, learngene_budget, recommend
from lgtool.bench.verdict import (
    break_even_sizes,
    by_seed,
    marginal_flops,
    mean_rows,
    measured_margin,
    seeded_cost,
    verdict,
)

# Forward FLOPs per image: a student step costs 3 of them, a teacher forward 10.
FLOPS = {"teacher": 10, "d8-w8": 4, "d2-w8": 1, "d4-w8": 2, "d6-w8": 3}
LEARNED = {"tleg": {"images": 100, "teacher_images": 100, "aux_size": "d8-w8"}}  # 3*100*4 + 100*10 = 2,200 FLOPs


def row(depth, init, epochs, val, *, seed=0, at_init=None, test=None, images_per_epoch=10):
    """One bench row at width 8; `at_init`: a learngene's validation top-1 as expanded."""
    r = {"depth": depth, "width": 8, "init": init, "epochs": epochs, "seed": seed, "params": 1, "val_top1": val,
         "top1": val if test is None else test, "train_images": epochs * images_per_epoch, "teacher_images": 0,
         "calibration_images": 0}  # fmt: skip
    if at_init is not None:
        r.update(val_at_init=at_init, top1_at_init=at_init)
    return r


def test_an_interval_spanning_one_is_a_tie_and_only_a_whole_interval_decides():
    assert verdict([0.9, 1.2], exact=True) == "tie"
    assert verdict([1.01, 1.4], exact=True) == "cheaper"
    assert verdict([0.5, 0.99], exact=True) == "dearer"
    assert verdict([0.5, 0.99], exact=False) == "tie"  # a lower bound below 1 says nothing
    assert verdict(None, exact=True) == "tie"


def test_seeds_that_disagree_give_an_interval_spanning_one_and_a_tie():
    # The learngene route: 2,200 (learning) + 3 x 10 (one epoch at d2) = 2,230 FLOPs on every seed. Scratch, 300
    # images an epoch, matches it after 1 epoch on seed 0 (900 FLOPs: ratio 0.40) and after 4 on seed 1 (3,600:
    # 1.61); their mean needs 4. The bootstrap over the seeds draws {0, 0} (0.40), {0, 1} twice and {1, 1} (1.61):
    # its 2.5th percentile is 0.40 + 0.075 x 1.21 = 0.49, its 97.5th 1.61.
    rows = []
    for seed, needs in ((0, 1), (1, 4)):
        rows.append(row(2, "tleg", 1, 0.80, seed=seed, at_init=0.5))
        rows += [row(2, "scratch", e, 0.80 if e >= needs else 0.60, seed=seed, images_per_epoch=300) for e in (1, 2, 4)]
    cost = seeded_cost(by_seed(rows), {"0": LEARNED, "1": LEARNED}, [0, 1], FLOPS, 1, margin=0.0)["tleg"]
    assert cost["ratio_flops"] == 1.61 and cost["ratio_flops_interval"] == [0.49, 1.61] and cost["verdict"] == "tie"
    # seed 1 alone gives 1.61 too, but one seed cannot show its noise: no interval, and no word but `tie`
    alone = seeded_cost(by_seed([r for r in rows if r["seed"] == 1]), {"1": LEARNED}, [1], FLOPS, 1, margin=0.0)
    assert alone["tleg"]["ratio_flops"] == 1.61 and alone["tleg"]["ratio_flops_interval"] is None
    assert alone["tleg"]["verdict"] == "tie"


def test_a_margin_turns_a_five_hundredths_of_a_point_miss_into_a_match():
    rows = [row(2, "tleg", 1, 0.8700), row(2, "weight-selection", 2, 0.8695), row(2, "weight-selection", 4, 0.8800)]
    strict = family_cost(rows, LEARNED, FLOPS, 1, margin=0.0)["tleg"]
    assert strict["alternative_per_size"] == {"d2-w8": "weight-selection@4"}  # 0.8695 < 0.8700: charged 4 epochs
    loose = family_cost(rows, LEARNED, FLOPS, 1, margin=0.001)["tleg"]
    assert loose["alternative_per_size"] == {"d2-w8": "weight-selection@2"} and loose["exact"]
    assert loose["alternative_flops"] == 3 * 20 * 1 < strict["alternative_flops"] == 3 * 40 * 1


def test_the_budget_rule_reads_the_learngenes_own_rows_and_ignores_the_alternatives():
    gene = [row(2, "tleg", 1, 0.870, at_init=0.866), row(4, "tleg", 1, 0.880, at_init=0.850)]
    weak = [row(d, "scratch", e, 0.5) for d in (2, 4) for e in (1, 2)]
    strong = [row(d, "scratch", e, 0.9) for d in (2, 4) for e in (1, 2)]
    margin = 0.005
    budgets = [
        family_cost(gene + alts, LEARNED, FLOPS, 1, margin)["tleg"]["epochs_per_size"] for alts in (weak, strong)
    ]
    # d2: as expanded is within 0.005 of fine-tuned, so 0 epochs; d4: 3 points below, so 1 epoch. Whatever the others.
    assert budgets[0] == budgets[1] == {"d2-w8": 0, "d4-w8": 1}
    options = [{"epochs": 1, "val_top1": 0.870}, {"epochs": 0, "val_top1": 0.866}]
    assert learngene_budget(options, 0.005)["epochs"] == 0 and learngene_budget(options, 0.001)["epochs"] == 1


def test_break_even_for_a_three_size_family_by_hand():
    # Learning: 3 x 100 images x 4 FLOPs (Aux-Net d8) + 100 teacher forwards x 10 = 2,200 FLOPs.
    # Per size, the learngene fine-tunes 1 epoch of 10 images, scratch needs 4 epochs of 10:
    #   d2: 30 vs 120 (saves 90), d4: 60 vs 240 (saves 180), d6: 90 vs 360 (saves 270); on average 180 a size.
    # The learning pays once k sizes save 2,200: k = ceil(2200 / 180) = 13.
    rows = []
    for d in (2, 4, 6):
        rows += [
            row(d, "tleg", 1, 0.85),
            row(d, "scratch", 1, 0.5),
            row(d, "scratch", 2, 0.7),
            row(d, "scratch", 4, 0.85),
        ]
    cost = seeded_cost(by_seed(rows), {"0": LEARNED}, [0], FLOPS, 1, margin=0.0)["tleg"]
    assert cost["learn_flops"] == 2200 and cost["verdict"] == "tie"  # one seed: no interval
    assert cost["per_size"] == {
        "d2-w8": {"learngene": 30, "alternative": 120},
        "d4-w8": {"learngene": 60, "alternative": 240},
        "d6-w8": {"learngene": 90, "alternative": 360},
    }
    assert cost["break_even_sizes"] == 13 and cost["marginal_flops"] == {"learngene": 60, "alternative": 240}
    assert cost["ratio_flops"] == round(720 / (2200 + 180), 2) == 0.3  # 3 sizes, far short of 13
    assert break_even_sizes(2200, {"a": {"learngene": 50, "alternative": 50}}) is None  # saves nothing: never pays
    assert marginal_flops({}) is None


def test_no_choice_reads_the_test_split():
    rows = []
    for seed in (0, 1):
        for d in (2, 4):
            rows += [row(d, "tleg", 1, 0.85 + 0.01 * seed, seed=seed, at_init=0.84)]
            rows += [row(d, "scratch", e, 0.6 + 0.06 * e, seed=seed) for e in (1, 2, 4)]
            rows += [row(d, "weight-selection", e, 0.8 + 0.03 * e, seed=seed) for e in (1, 2)]
    scrambled = copy.deepcopy(rows)
    for i, r in enumerate(scrambled):  # every test number changed, validation untouched
        r["top1"] = (i * 0.37) % 1
        if "top1_at_init" in r:
            r["top1_at_init"] = 1 - r["top1"]
    learned = {"0": LEARNED, "1": LEARNED}

    def choices(rs):
        cost = seeded_cost(by_seed(rs), learned, [0, 1], FLOPS, 1, margin=0.01)["tleg"]
        picked = {k: cost[k] for k in ("alternative_per_size", "epochs_per_size", "ratio_flops", "ratio_flops_interval",
                                       "verdict", "break_even_sizes")}  # fmt: skip
        mean = mean_rows(by_seed(rs), [0, 1])
        routes = {s: r["route"] for s, r in recommend(mean, LEARNED, FLOPS, 1, 0.01).items()}
        return picked, routes, measured_margin(by_seed(rs), [0, 1], 500)

    assert choices(rows) == choices(scrambled)


def test_rows_are_averaged_over_seeds_and_the_margin_is_the_larger_noise():
    rows = [row(2, "tleg", 1, 0.80, seed=0), row(2, "tleg", 1, 0.90, seed=1), row(2, "scratch", 1, 0.5, seed=0)]
    mean = mean_rows(by_seed(rows), [0, 1])
    assert [(r["init"], r["val_top1"], r["val_top1_range"]) for r in mean] == [
        ("tleg", pytest.approx(0.85), [0.8, 0.9])
    ]
    margin = measured_margin(by_seed(rows), [0, 1], val_images=10_000)
    # split: sqrt(0.85 x 0.15 / 20,000) = 0.0025; seeds: SD 0.0707 / sqrt(2) = 0.05, the larger
    assert margin["standard_error"] == pytest.approx(0.0025, abs=1e-4) and margin["value"] == pytest.approx(0.05)
    assert "spread" in margin["source"]
    assert measured_margin(by_seed(rows), [0, 1], 10_000, declared=0.003)["value"] == 0.003
