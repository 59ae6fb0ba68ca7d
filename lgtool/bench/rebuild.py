"""recipe.sh: the lgtool commands that rebuild the family a bench handed over, size by size, by the route the bench
chose for it (learn once per learngene used, then expand, from that learngene or from the ancestor by weight
selection, then finetune), with the rate, warmup, layer policy and epochs the bench chose on validation.

Its data flags are variables whose defaults are the bench's own: run as it is, it trains what the bench trained
(same subset, validation split and seed); pointed at a user's full data, it does there what the bench did on its
subset. It runs under `bash -e`."""

from __future__ import annotations

import shlex

from lgtool.base.arch import Arch
from lgtool.baselines import BASELINES
from lgtool.bench.cost import LEARNGENES
from lgtool.rules import RULES

PRELUDE = """#!/usr/bin/env bash
# Rebuilds the family `lgtool bench` handed over beside this file, size by size, by the route the bench chose there.
# Run as it is, it retrains on the bench's own subset; for your full data, e.g.:
#   DATA=/data/my-images TRAIN_SAMPLES= OUT=my-family bash -e recipe.sh
# Each size's model ends in $OUT/<size>/ (used as expanded) or $OUT/<size>/last/ (fine-tuned).
set -euo pipefail
LGTOOL=${{LGTOOL:-lgtool}}
ANCESTOR=${{ANCESTOR:-{ancestor}}}
DATA=${{DATA:-{data}}}
DATA_DIR=${{DATA_DIR-{data_dir}}}            # Fashion-MNIST's IDX folder, if not the default
TRAIN_SAMPLES=${{TRAIN_SAMPLES-{train_samples}}}   # empty: every training image
VAL_FRACTION=${{VAL_FRACTION:-{val_fraction}}}   # held out for validation, as the bench did
SEED=${{SEED:-{seed}}}
OUT=${{OUT:-family-rebuilt}}

data=(--data "$DATA" --seed "$SEED" --val-fraction "$VAL_FRACTION")
if [ -n "$DATA_DIR" ]; then data+=(--data-dir "$DATA_DIR"); fi
if [ -n "$TRAIN_SAMPLES" ]; then data+=(--train-samples "$TRAIN_SAMPLES"); fi
mkdir -p "$OUT"

"""


def recipe(family: dict, report: dict, io, given: dict) -> str:
    """recipe.sh for `family` (family.json's entries) from the bench's `report`; `io`: its BenchIO; `given`: the
    learngenes it was given (method -> path), which are used as they are rather than learned again."""
    cfg = report["config"]
    text = PRELUDE.format(
        ancestor=shlex.quote(report["ancestor"]["name"]),
        data=shlex.quote(str(io.data)),
        data_dir=shlex.quote(str(io.data_dir)) if io.data_dir else "",
        train_samples=cfg["train_samples"] or "",
        val_fraction=cfg["val_fraction"],
        seed=cfg["seeds"][0],  # the family is the first seed's
    )
    used = [m for m in LEARNGENES if any(e["init"] == m for e in family.values())]
    blocks = [_learngenes(used, report, given)] if used else []
    blocks += [_size(size, e, report) for size, e in family.items()]
    done = [f'echo "{size}: $OUT/{size}{"/last" if e["epochs"] else ""}"' for size, e in family.items()]
    return text + "\n".join(b + "\n" for b in blocks) + "\n".join(done) + "\n"


def _learngenes(methods: list, report: dict, given: dict) -> str:
    cfg, arch = report["config"], report["arch"]
    lines = ["# --- learngenes: each learned once, then expanded at every size that uses it ---"]
    for m in methods:
        if m in given:
            lines.append(f'cp {shlex.quote(str(given[m]))} "$OUT/{m}.safetensors"  # the learngene the bench was given')
            continue
        options = [f"--{k.replace('_', '-')} {_flag_value(v)}" for k, v in cfg["rule_options"].items()
                   if k in RULES[m].OPTIONS]  # fmt: skip
        init = report["learngenes"].get(m, {}).get("init") or cfg["learn_init"]
        family = _family_flags(report) if cfg["learn_family"] else []
        lines.append(_command(
            "learn", '--ancestor "$ANCESTOR"', f"--method {m}", f"--width {arch['embed_dim']}",
            f"--num-heads {arch['num_heads']}", f"--aux-depth {cfg['aux_depth']}", f"--patch-size {arch['patch_size']}",
            f"--init {init}", *options, *family, f"--epochs {cfg['learn_epochs']}", f"--lr {cfg['learn_lr']:g}",
            f"--batch-size {cfg['batch_size']}", '"${data[@]}"', f'-o "$OUT/{m}.safetensors"',
        ))  # fmt: skip
    return "\n".join(lines)


def _size(size: str, e: dict, report: dict) -> str:
    """One size's commands: its start (expand, or nothing for a baseline that `finetune --init scratch` starts), then
    its fine-tune unless used as expanded."""
    cfg = report["config"]
    heads = Arch(**report["arch"]).resized(e["depth"], e["width"]).num_heads
    shape = [f"--depth {e['depth']}", f"--width {e['width']}", f"--num-heads {heads}"]
    final = f'"$OUT/{size}"' if e["epochs"] == 0 else f'"$OUT/{size}.init"'
    scored = f"validation top-1 {e['val_top1']:.4f}, test {e['top1']:.4f}"
    lines = [f"# --- {size}: {e['route']} (in the bench: {scored}) ---"]
    baseline = BASELINES.get(e["init"])
    expanded = None if baseline is None else baseline.expand_args(e, shape)
    if e["init"] in LEARNGENES:
        calibrate = []
        if e.get("calibration_images"):
            calibrate = ['--calibrate "$DATA"', f"--calibrate-steps {cfg['calibrate_steps']}",
                         f"--calibrate-samples {cfg['calibrate_samples']}"]  # fmt: skip
        expanded = [f'"$OUT/{e["init"]}.safetensors"', *shape, *calibrate]
    if expanded is not None:
        lines.append(_command("expand", *expanded, f"-o {final}"))
    if e["epochs"] == 0:
        return "\n".join(lines)
    scratch = ["--init scratch", *shape, f"--patch-size {report['arch']['patch_size']}"]
    start = [final] if expanded is not None else scratch
    teacher = ['--ancestor "$ANCESTOR"', "--kd soft"] if baseline is not None and baseline.DISTILS else []
    lines.append(_command(
        "finetune", *start, '"${data[@]}"', *teacher, f"--epochs {e['epochs']}", f"--lr {e['lr']:g}",
        f"--warmup-epochs {e['warmup_epochs']:g}", f"--batch-size {cfg['batch_size']}", f'-o "$OUT/{size}"',
    ))  # fmt: skip
    return "\n".join(lines)


def _family_flags(report: dict) -> list[str]:
    cfg = report["config"]
    depths = sorted({*cfg["depths"], *(cfg["width_depths"] or [])})
    widths = sorted({report["arch"]["embed_dim"], *cfg["widths"]})
    return [f"--family-depths {','.join(map(str, depths))}", f"--family-widths {','.join(map(str, widths))}"]


def _flag_value(v) -> str:
    return ",".join(map(str, v)) if isinstance(v, list | tuple) else str(v)


def _command(name: str, *args: str) -> str:
    return " ".join(["$LGTOOL", name, *args])  # unquoted: LGTOOL may be "python -m lgtool"
