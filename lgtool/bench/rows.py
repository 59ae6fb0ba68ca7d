"""The bench's rows: what every row of one seed shares (`Bench`), how each init makes its model at a size (a
learngene by its rule, a baseline by its module in `lgtool.baselines`), picks its rate on validation and trains; and
how an alternative's budget doubles along its curve, every seed at each budget, until its mean over the seeds matches
the best learngene's within the tie margin (`race`)."""

from __future__ import annotations

import copy
import itertools
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lgtool.base.arch import Arch, build_vit
from lgtool.base.errors import InputError
from lgtool.baselines import BASELINES, same_start, start_seed
from lgtool.bench.cost import EPS, LEARNGENES, forward_flops, row_flops, size_name
from lgtool.bench.plan import BenchConfig
from lgtool.family import makeable, target_arch
from lgtool.learngene import init_learngene, load_learngene
from lgtool.materialize import expand
from lgtool.rules import RULES
from lgtool.training.calibrate import calibrate
from lgtool.training.data import balanced_subset
from lgtool.training.learn import learn
from lgtool.training.loop import TrainConfig, evaluate, fit
from lgtool.training.settings import LearnConfig


@dataclass
class Bench:
    """What every row of one seed shares: settings, the seed, family architecture, that seed's data, ancestor."""

    cfg: BenchConfig
    seed: int
    arch: Arch
    data: object  # Data: train less the validation split, val (every choice), test (reported numbers only)
    view: object
    teacher: torch.nn.Module
    vit_ancestor: bool
    log: object
    at_init: dict = field(default_factory=dict)  # (depth, width, start, layer policy) -> top-1 before training
    keep: object = None  # keep(row, models by budget, arch): offered every finished row's models (the family)

    def learngenes(self, ancestor, out, given: dict, previous, resume):
        """Each benched learngene, distilled once per seed on that seed's training images less its validation split
        (or `given`: method -> (path, learngene) loaded, the same for every seed), with what learning it cost."""

        genes, learn_rows = {}, {}
        for method in [i for i in self.cfg.inits if i in LEARNGENES]:
            if method in given:
                path, genes[method] = given[method]
            else:
                kind = f"{method}-family" if self.cfg.learn_family else method  # never resumed as the other kind
                path = out / "learngenes" / f"s{self.seed}" / f"{kind}.safetensors"
                if not path.is_file():
                    path.parent.mkdir(parents=True, exist_ok=True)
                    learn_rows[method] = self.learn(ancestor, method, path, resume)
                genes[method] = load_learngene(path)
            known = previous.get("learned", {}).get(str(self.seed), {}).get(method, {"images": None})
            learn_rows.setdefault(method, known)
            prov = genes[method].meta.provenance  # a given learngene: its cost from what `learn` recorded
            if learn_rows[method].get("images") is None and prov.get("steps") and prov.get("batch_size"):
                learn_rows[method]["images"] = prov["steps"] * prov["batch_size"]
                trained = (prov.get("family") or {}).get("images") if isinstance(prov.get("family"), dict) else None
                if isinstance(trained, dict) and all(type(n) is int and n >= 0 for n in trained.values()):
                    learn_rows[method]["student_images"] = trained
                ordered = prov.get("ordering")
                ordered = ordered.get("images") if isinstance(ordered, dict) else None
                learn_rows[method]["ordering_images"] = ordered if type(ordered) is int and ordered >= 0 else None
                ran = prov.get("teacher_images")
                learn_rows[method]["teacher_images"] = (
                    ran if type(ran) is int and ran > 0 else learn_rows[method]["images"]
                )
            learn_rows[method].update(path=str(path), params=genes[method].num_params(), init=prov.get("init"))
            learn_rows[method].setdefault("aux_size", size_name(genes[method].arch.depth, genes[method].arch.embed_dim))
        return genes, learn_rows

    def learn(self, ancestor, method: str, path: Path, resume: bool) -> dict:
        cfg = self.cfg
        # A learngene is seeded from the ancestor's blocks only when it has some (a ViT); else the papers' init.
        init = cfg.learn_init if self.vit_ancestor else "official"
        self.log(f"learn {method} (seed {self.seed}): {cfg.learn_epochs} epochs of distillation, init {init}")
        options = {k: v for k, v in cfg.rule_options.items() if k in RULES[method].OPTIONS}
        t0 = time.perf_counter()
        checkpoint = path.with_suffix(".ckpt")
        r = learn(
            LearnConfig(
                ancestor=ancestor,
                method=method,
                output=path,
                resume=checkpoint if resume and checkpoint.is_file() else None,
                width=self.arch.embed_dim,
                num_heads=self.arch.num_heads,
                aux_depth=cfg.aux_depth,
                patch_size=self.arch.patch_size,
                init=init,
                family=self.family(method, options) if cfg.learn_family else None,
                **options,
            ),
            TrainConfig.for_command(
                "learn", epochs=cfg.learn_epochs, batch_size=cfg.batch_size, lr=cfg.learn_lr, seed=self.seed
            ),
            dataset=self.data,
            evaluate_on=self.data.val,
            evaluate_ancestor=False,
            on_event=reporter(self.log, f"learn {method} (seed {self.seed})"),
        )
        # every image it trained on, resumed runs included; unknown after an old checkpoint: every step's batch
        images = r["images_trained"] if r["images_trained"] is not None else r["steps"] * cfg.batch_size
        return {
            "aux_val_top1": r["aux_top1"],
            "images": images,
            # the forwards it ran (repeated inputs come from its cache); unknown after an old checkpoint: all
            "teacher_images": images if r["teacher_images"] is None else r["teacher_images"],
            "student_images": r["family_images"],  # per size trained, for a family-aware learngene
            "ordering_images": r["ordering_images"],  # scored to order its channels by importance
            "seconds": round(time.perf_counter() - t0, 1),
            "init_why": None if init == cfg.learn_init else "the ancestor is not a ViT: no blocks to seed from",
        }

    def family(self, method: str, options: dict) -> list[tuple[int, int]]:
        """The benched sizes this method's learngene can make (SWS makes no depth below its stage count)."""

        a = self.arch
        probe = init_learngene(method, width=a.embed_dim, num_heads=a.num_heads, aux_depth=self.cfg.aux_depth,
                               img_size=a.img_size, patch_size=a.patch_size, in_chans=a.in_chans,
                               num_classes=a.num_classes, **options)  # fmt: skip
        return makeable(probe, self.cfg.sizes())

    def flops(self) -> dict:
        """Forward FLOPs per image of the teacher and of every size benched (the Aux size included)."""
        sizes = {*self.cfg.sizes(), (self.cfg.aux_depth, self.arch.embed_dim)}
        out = {"teacher": forward_flops(self.teacher, self.view)}
        for depth, width in sorted(sizes):
            out[size_name(depth, width)] = forward_flops(build_vit(self.arch.resized(depth, width)), self.view)
        return out

    def initial_model(self, init: str, depth: int, width: int, genes: dict, layers: str | None):
        """The Desc-Net of one row before fine-tuning, the images spent making it (WAVE calibration) and what its
        row records of that start (weight selection: the blocks cut, the head). InputError says why an init cannot
        make this size."""

        torch.manual_seed(start_seed(depth, width, self.seed))  # fresh heads and scratch weights: one per seed
        target = self.arch.resized(depth, width)
        if init in LEARNGENES:
            gene, spent = genes[init], 0
            size = target_arch(gene, depth, width, target.num_classes, num_heads=target.num_heads)
            trained = [(gene.arch.depth, gene.arch.embed_dim), *map(tuple, gene.meta.sizes)]
            if RULES[init].SIZE_SPECIFIC and (depth, width) not in trained:  # a family-aware size needs none
                gene, spent = self.calibrate(gene, size)
            return expand(gene, size), spent, {}
        model, done = BASELINES[init].start(self.teacher, target, self.seed, layers)
        return model, 0, done

    def calibrate(self, gene, target: Arch):
        """A new size's own tensors (WAVE's scalers) learned on a few training images, templates frozen."""

        cfg = self.cfg
        data = copy.copy(self.data)
        data.train = data.train.subset(balanced_subset(data.train.labels, cfg.calibrate_samples, self.seed + 2))
        calibrated, info = calibrate(  # the row measures the calibrated model itself: skip the "before" pass
            gene, target, dataset=data, steps=cfg.calibrate_steps, lr=cfg.calibrate_lr, seed=self.seed,
            measure_before=False, evaluate_on=data.val,
        )  # fmt: skip
        return calibrated, info["images"]

    def candidates(self, init: str, depth: int, width: int, epochs: int, rows: dict) -> list[dict]:
        """The settings this row may train with: the grid, or the choice made at this init's first budget here."""

        first = rows.get((depth, width, init, self.cfg.curve_epochs()[0], self.seed))
        if init in BASELINES and first and "lr" in first and first["epochs"] != epochs:
            return [{k: first[k] for k in ("lr", "warmup_epochs", "layer_policy") if k in first}]
        grid = [{"lr": lr, "warmup_epochs": w} for lr, w in itertools.product(self.cfg.lr_grid, self.cfg.warmup_grid)]
        policies = BASELINES[init].policies(self.teacher, depth) if init in BASELINES else ()
        if policies:
            grid = [{**g, "layer_policy": p} for p in policies for g in grid]
        return grid

    def row(self, init: str, depth: int, width: int, epochs: int, genes: dict, rows: dict) -> dict:
        row = {"depth": depth, "width": width, "init": init, "epochs": epochs, "seed": self.seed}
        t0 = time.perf_counter()
        starts, best = {}, None  # one initial model per layer policy, copied for every rate
        for choice in self.candidates(init, depth, width, epochs, rows):
            policy = choice.get("layer_policy")
            if policy not in starts:
                try:
                    model, calibration, recorded = self.initial_model(init, depth, width, genes, policy)
                except InputError as e:
                    return {**row, "skipped": str(e)}
                known = self.at_init.get((depth, width, same_start(init), policy), {})
                at_init = {"val_at_init": known.get("val_at_init") or evaluate(model, self.data.val, self.view)}
                starts[policy] = (model, calibration, recorded, at_init)
            model, calibration, recorded, at_init = starts[policy]
            if epochs == 0:
                best = (choice, model, {"top1": at_init["val_at_init"], "images_seen": 0})
                break
            trained = copy.deepcopy(model)
            summary = self.train(trained, init, epochs, choice)
            row.setdefault("tried", []).append({**choice, "val_top1": summary["top1"]})
            if best is None or summary["top1"] > best[2]["top1"]:
                best = (choice, trained, summary)
        choice, trained, summary = best
        model, calibration, recorded, at_init = starts[choice.get("layer_policy")]
        known = self.at_init.get((depth, width, same_start(init), choice.get("layer_policy")), {})
        result = {
            **row,
            **({} if epochs == 0 else choice),
            **recorded,
            "params": sum(p.numel() for p in model.parameters()),
            "calibration_images": calibration,
            **at_init,
            "top1_at_init": (at_start := known.get("top1_at_init") or evaluate(model, self.data.test, self.view)),
            "val_top1": summary["top1"],
            "top1": at_start if epochs == 0 else evaluate(trained, self.data.test, self.view),
            "train_images": summary["images_seen"],
            "teacher_images": summary.get("teacher_images", 0),  # 0 without a teacher; repeats come from its cache
            "wall_seconds": round(time.perf_counter() - t0, 2),
        }
        start = (depth, width, same_start(init), choice.get("layer_policy"))
        self.at_init[start] = {k: result[k] for k in ("val_at_init", "top1_at_init")}
        if self.keep is not None:  # a learngene's Desc-Net is a candidate as expanded too; an alternative's cut is not
            models = {**({0: model} if init in LEARNGENES else {}), **({epochs: trained} if epochs else {})}
            self.keep(result, models, self.arch.resized(depth, width))
        return result

    def train(self, model, init: str, epochs: int, choice: dict) -> dict:
        """Fine-tune (or train) one row's model with one candidate's settings; evaluated on the validation split."""
        teacher = self.teacher if init in BASELINES and BASELINES[init].DISTILS else None
        cfg = TrainConfig(  # with a teacher: soft KD at TrainConfig's alpha, tau and reduction, as `learn` uses
            epochs=epochs,
            batch_size=self.cfg.batch_size,
            lr=choice["lr"],
            warmup_epochs=choice["warmup_epochs"],
            kd="none" if teacher is None else "soft",
            seed=self.seed,
            log_every=10**9,
            eval_each_epoch=False,
        )
        return fit(model, self.data, self.view, cfg, identity={}, teacher=teacher, evaluate_on=self.data.val)


def race(benches: list, init: str, depth: int, width: int, genes: dict, rows: dict, record, flops: dict,
         margin: float) -> None:  # fmt: skip
    """An alternative at its first budget on every seed, doubled until its mean validation top-1 over the seeds is
    within `margin` of the best learngene's here (at either of its budgets), stops improving, or reaches
    `max_epochs`. With no learngene here, the first budget only. Past its first budget, an alternative stops once its
    next budget would cost more than an alternative that already matched here: it could no longer be the best
    alternative (a `REFERENCE` baseline, scratch, runs on regardless: the papers' comparison needs its whole curve).
    `genes`: seed -> method -> learngene; `rows`: (depth, width, init, epochs, seed) -> row."""
    cfg, seeds = benches[0].cfg, [b.seed for b in benches]
    target = _target(rows, depth, width, cfg.epochs, seeds)
    last = None
    for epochs in cfg.curve_epochs():
        if (
            last is not None
            and not BASELINES[init].REFERENCE
            and 2 * last["cost"] > _cheapest_match(rows, depth, width, seeds, target, margin, flops)
        ):
            return  # fmt: skip
        for bench in benches:
            if (depth, width, init, epochs, bench.seed) not in rows:
                record(bench.row(init, depth, width, epochs, genes[bench.seed], rows))
        runs = [rows[(depth, width, init, epochs, s)] for s in seeds]
        if any("skipped" in r for r in runs) or target is None:
            return
        val = _mean([r["val_top1"] for r in runs])
        if val >= target - margin - EPS:
            return
        if last is not None and val - last["val"] < cfg.min_gain:
            return
        last = {"val": val, "cost": _mean([row_flops(r, flops) for r in runs])}


def _mean(values: list) -> float:
    return sum(values) / len(values)


def _target(rows: dict, depth: int, width: int, epochs: int, seeds: list) -> float | None:
    """The best learngene's mean validation top-1 over the seeds here, fine-tuned or as expanded."""
    best = None
    for method in LEARNGENES:
        runs = [rows.get((depth, width, method, epochs, s), {}) for s in seeds]
        for measured in ("val_top1", "val_at_init"):
            values = [r.get(measured) for r in runs]
            if all(v is not None for v in values):
                best = max(best or 0.0, _mean(values))
    return best


def _cheapest_match(rows: dict, depth: int, width: int, seeds: list, target, margin: float, flops: dict) -> float:
    """The mean cost of the cheapest alternative budget here whose mean over the seeds is already within `margin` of
    `target`; infinity where none is."""
    if target is None:
        return math.inf
    costs = []
    for d, w, init, epochs, seed in rows:
        if (d, w) == (depth, width) and init in BASELINES and seed == seeds[0]:
            runs = [rows.get((d, w, init, epochs, s), {}) for s in seeds]
            if all("val_top1" in x for x in runs) and _mean([x["val_top1"] for x in runs]) >= target - margin - EPS:
                costs.append(_mean([row_flops(x, flops) for x in runs]))
    return min(costs, default=math.inf)


def reporter(log, what):
    def report(**e):
        if "epoch_end" in e:
            log(f"{what}: epoch {e['epoch_end']}/{e['epochs']} validation top-1 {e['top1']:.4f}")

    return report
