"""`lgtool expand` as a library call: a learngene file to a Desc-Net folder, as a plan and its run.

`plan_expand` makes every check there is from the learngene's header alone (the size, the rule's layer plan,
the memory it needs, the output path) and writes nothing; `run_expand` then reads the learngene once (tensors
and digest), calibrates a size's own tensors on data first if asked, builds the Desc-Net, writes the folder
and, with `check`, reloads it with plain timm and compares. Torch-free until a plan runs, so that the command's
settings and a plan's errors cost no torch import.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from lgtool.base.arch import (
    MAX_DEPTH,
    MAX_EMBED_DIM,
    MAX_IMG_SIZE,
    MAX_NUM_CLASSES,
    Arch,
    build_vit,
    check_memory,
    forward_bytes,
    one_line,
    train_bytes,
)
from lgtool.base.atomic import scoped
from lgtool.base.compat import utf8_path
from lgtool.base.errors import CheckError, LgtoolError, UsageError, out_of_memory
from lgtool.base.lazy import lazy, timm, torch
from lgtool.base.outputs import check_output
from lgtool.base.settings import check_settings, flag, setting, settings_of
from lgtool.baselines.weight_selection import LAYER_POLICIES
from lgtool.family import describe_layers, target_arch
from lgtool.hub import CARD, CONFIG, WEIGHTS, lineage, write_descnet
from lgtool.learngene import GeneMeta, read_header, read_learngene

expansion = lazy("lgtool.materialize")
calibration = lazy("lgtool.training.calibrate")
data = lazy("lgtool.training.data")


@dataclass
class ExpandConfig:
    """What `lgtool expand` is asked to make: one field per flag (`lgtool.base.settings`)."""

    depth: int | None = setting(
        None,
        "Desc-Net depth (default: the Aux depth; with --ancestor, its depth).",
        lo=1,
        limit=MAX_DEPTH,
        flags=("--depth", "-d"),
    )
    width: str | None = setting(
        None,
        "tiny, small, base or an integer, narrower ones cut by evenly spaced selection (default: the Aux width).",
        flags=("--width", "-w"),
    )
    num_heads: int | None = setting(
        None,
        "Attention heads of the Desc-Net (default: the learngene's or the ancestor's).",
        lo=1,
        limit=MAX_EMBED_DIM,
    )
    num_classes: int | None = setting(
        None, "Classes of the new head (fresh init if it differs).", lo=1, limit=MAX_NUM_CLASSES
    )
    layer_map: list[int] | None = setting(None, "SWS only: the stage of every layer, e.g. 0,0,1,1,2.", allow_empty=True)
    img_size: int | None = setting(
        None, "Input resolution (default: the learngene's); position embedding resampled.", lo=1, limit=MAX_IMG_SIZE
    )
    check: bool = setting(False, "Reload with plain timm and compare logits; exit 4 above --tol.")
    tol: float = setting(1e-5, "Tolerance of --check (max abs logit difference).", lo=0.0)
    calibrate: str | None = setting(
        None, "Learn this size's own numbers on DATA first (WAVE: its scalers, SWS and TLEG: norms and biases)."
    )
    calibrate_steps: int = setting(200, "Optimizer steps of --calibrate.", lo=1)
    calibrate_samples: int = setting(2000, "Images --calibrate trains on.", lo=1)
    data_dir: str | None = setting(None, "Where the Fashion-MNIST IDX files are.")
    ancestor: str | None = setting(
        None,
        "Cut the Desc-Net from this larger ViT by weight selection instead (a shipped name, timm name or folder).",
    )
    layers: str | None = setting(
        None,
        "With --ancestor, the ancestor's first blocks or evenly spaced ones (default spaced: the bench's full "
        "fmnist-vit run chose it in 27 of its 30 weight-selection rows).",
        choices=LAYER_POLICIES,
    )

    def __post_init__(self):
        check_settings(self)
        self._check_route()

    def _check_route(self) -> None:
        """A learngene's settings with --ancestor, or weight selection's without it, are usage errors."""
        if self.ancestor is None:
            if self.layers is not None:
                raise UsageError(
                    "--layers chooses the ancestor blocks of weight selection and needs --ancestor; a learngene's "
                    "rule places its layers (SWS: --layer-map)"
                )
            return
        for f in settings_of(self):
            if f.name in LEARNGENE_ONLY and getattr(self, f.name) != f.default:
                hint = LEARNGENE_ONLY[f.name]
                raise UsageError(f"{flag(f)} is a learngene's setting: weight selection (--ancestor) {hint}")


# Settings that mean something for a learngene only, and what weight selection does instead.
LEARNGENE_ONLY = {
    "layer_map": "takes its blocks by --layers first|spaced",
    "img_size": "keeps the ancestor's input size",
    **dict.fromkeys(("calibrate", "calibrate_steps", "calibrate_samples", "data_dir"), "reads no data"),
}


@dataclass(frozen=True)
class ExpandPlan:
    """An expand, checked: what the learngene's header said, the Desc-Net it makes and the folder it goes to."""

    gene_path: Path
    header: tuple[dict, GeneMeta]  # `read_header`'s: the run's one read of the file must find the same
    target: Arch
    layers: list  # the rule's layer plan for `target`: the blocks are built from it and the folder records it
    output: Path
    cfg: ExpandConfig
    force: bool

    def describe(self) -> dict:
        """What the run would write, from the plan alone (`lgtool expand --dry-run` prints it)."""
        return {
            **would_write(self.output, self.target, "learngene"),
            "learngene": str(self.gene_path),
            "method": self.header[1].method,
            "layers": self.layers,
            "calibrate": self.cfg.calibrate,
            "check": self.cfg.check,
        }


def would_write(output: Path, target: Arch, route: str) -> dict:
    """The part of a planned expand's description both routes share: the folder, its files and the model's size."""
    return {
        "route": route,
        "output": str(output),
        "files": [WEIGHTS, CONFIG, CARD],
        "depth": target.depth,
        "width": target.embed_dim,
        "num_heads": target.num_heads,
        "num_classes": target.num_classes,
        "params": target.num_params(),
    }


def plan_expand(gene_path, output=None, cfg: ExpandConfig | None = None, *, force: bool = False) -> ExpandPlan:
    """Every check of an expand, from the learngene's header alone (no tensor read, nothing written); claims
    the output (default name desc-d<depth>-<width>) for the run's final rename."""
    cfg = cfg or ExpandConfig()
    if cfg.ancestor is not None:
        raise UsageError(
            f"a learngene file ({gene_path}) and --ancestor {cfg.ancestor}: expand one or the other (weight selection "
            "takes no learngene)"
        )
    header = read_header(gene_path)
    meta = header[1]
    target = target_arch(meta, cfg.depth, cfg.width, cfg.num_classes, cfg.layer_map, cfg.img_size, cfg.num_heads)
    layers = describe_layers(meta, target, cfg.layer_map)
    check_expand_memory(target, cfg.check, calibrates=cfg.calibrate is not None)
    output = Path(output or f"desc-d{target.depth}-{cfg.width or target.embed_dim}")
    reads = [gene_path, cfg.data_dir, *(data.data_paths(cfg.calibrate, cfg.data_dir) if cfg.calibrate else ())]
    if cfg.calibrate is not None:
        data.check_data(cfg.calibrate, cfg.data_dir)
    check_output(output, inputs=reads, force=force, is_dir=True)
    return ExpandPlan(Path(gene_path), header, target, layers, output, cfg, force)


CHECK_BATCH = 4  # images --check runs through each model
CALIBRATE_BATCH = 64  # images a step of --calibrate trains on (calibrate.py's default)


def check_expand_memory(target: Arch, check: bool, sizes: str = "--depth, --width or --img-size", *,
                        calibrates: bool = False) -> None:  # fmt: skip
    """Refuses, before any work, an expand whose Desc-Net (3 copies: built, saved, written) does not fit in memory;
    with --calibrate on the CPU, also what its training's backward keeps (the few tensors it learns add little);
    with --check, also what its reload holds at once: the state kept for comparison, the model reloaded from the
    folder and its loaded weights, the model holding the state (or the Aux-Net's weights), and a forward."""
    # on a GPU, calibration's training keeps its activations there
    training = train_bytes(target, CALIBRATE_BATCH) if calibrates and not torch.cuda.is_available() else 0
    if not check:
        what = "expand --calibrate" if calibrates else "expand"
        return check_memory(target, what, extra=training, hint=f"choose a smaller {sizes}")
    check_memory(
        target,
        "expand --check",
        copies=6,
        extra=max(forward_bytes(target, CHECK_BATCH), training),
        hint=f"choose a smaller {sizes}, or expand without --check",
    )


def run_expand(plan: ExpandPlan, progress=None) -> dict:
    """The plan, done: the learngene read once, the Desc-Net built (calibrated first if asked), its folder
    written and, with `check`, verified before it takes its name. `progress()`: a progress context for calibration."""
    with one_thread():
        gene, sha256 = read_learngene(plan.gene_path, plan.header)
    info = lineage(gene.meta, plan.gene_path, sha256, plan.target, plan.layers)
    if plan.cfg.calibrate is not None:
        state = _calibrated_state(plan, gene, info, progress)
    else:  # without --check, whatever the rule builds a layer at a time is built as it is written
        with one_thread():
            state = expansion.desc_tensors(gene, plan.target, plan.layers, by_layer=not plan.cfg.check)
    checked, norm = {}, gene.meta.input.model_dump()
    verify = _verifier(plan, gene, state, checked) if plan.cfg.check else None
    with nullcontext() if plan.cfg.check else one_thread():  # --check's forward keeps every thread
        write_descnet(state, plan.target, plan.output, norm, info, force=plan.force, verify=verify)
    return _result(plan, gene, info, checked)


@contextmanager
def one_thread():
    """torch on one thread for what only streams memory: checking a learngene's tensors, building a Desc-Net from
    them (a product and a sum per weight, or none). A second thread gains little there, and on a busy machine its
    pool waits on a thread that is not running: on 2 loaded cores a DeiT-S-wide TLEG Desc-Net of depth 12 took
    1.5 s to build on two threads, 0.1 s on one. Training and --check's forward keep every thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@scoped
def expand_folder(
    gene_path, output=None, cfg: ExpandConfig | None = None, *, force: bool = False, progress=None
) -> dict:
    """`lgtool expand`: learngene file -> Desc-Net folder, as a plan and its run. The output's claim guards this
    call's own write only."""
    return run_expand(plan_expand(gene_path, output, cfg, force=force), progress)


def _calibrated_state(plan: ExpandPlan, gene, info: dict, progress) -> dict:
    """The Desc-Net after its own numbers (WAVE's scalers; SWS's and TLEG's norms and biases) were learned at the
    target size on the data `calibrate` names (`calibrated_desc`); records how in `info`."""
    cfg = plan.cfg
    with progress() if progress else nullcontext(None) as report:
        state, info["calibration"] = calibration.calibrated_desc(
            gene,
            plan.target,
            cfg.calibrate,
            data_dir=cfg.data_dir,
            samples=cfg.calibrate_samples,
            steps=cfg.calibrate_steps,
            on_event=report,
        )
    return state


def _verifier(plan: ExpandPlan, gene, state: dict, checked: dict):
    at_aux = plan.target == gene.arch and plan.cfg.layer_map is None and plan.cfg.calibrate is None
    return verifier(state, plan.target, plan.cfg.tol, checked, gene if at_aux else None)


def verifier(state: dict, target: Arch, tol: float, checked: dict, gene=None):
    """--check, run on the written folder before it takes the final name (against the learngene's Aux-Net too,
    if given); fills `checked`, and refuses the folder above `tol`."""

    def verify(folder):
        try:
            diffs = check_descnet(folder, state, target, gene, batch=CHECK_BATCH)
        except (MemoryError, RuntimeError, OSError) as e:  # the reload or its forward found no memory after all
            if not out_of_memory(e):
                raise
            raise LgtoolError(
                f"--check: out of memory reloading the Desc-Net ({one_line(str(e) or type(e).__name__)[:200]}); "
                "nothing was written, expand without --check or free memory"
            ) from None
        checked.update(diffs, tol=tol, passed=all(v <= tol for v in diffs.values()))
        if not checked["passed"]:
            worst = max(v for k, v in diffs.items() if k.startswith("max_abs"))
            raise CheckError(f"--check failed: max abs difference {worst:.3g} > {tol:g}; nothing was written")

    return verify


def check_descnet(out_dir, state: dict, arch: Arch, gene=None, batch: int = 4, seed: int = 0) -> dict:
    """Reload `out_dir` with plain timm and compare its logits with a model holding `state` in memory (and
    with the learngene's Aux-Net, if given)."""
    with utf8_path(Path(out_dir).resolve()) as folder:
        reloaded = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
    model = build_vit(arch)
    model.load_state_dict(state)
    x = torch.randn(batch, arch.in_chans, arch.img_size, arch.img_size, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        ref = model.eval()(x)
        result = {"max_abs_diff_timm": (reloaded(x) - ref).abs().max().item()}
        if gene is not None:
            result["max_abs_diff_aux"] = (expansion.build_aux(gene).eval()(x) - ref).abs().max().item()
    return result


def _result(plan: ExpandPlan, gene, info: dict, checked: dict) -> dict:
    target = plan.target
    result = {
        "output": str(plan.output),
        "method": gene.method,
        "depth": target.depth,
        "width": target.embed_dim,
        "num_heads": target.num_heads,
        "num_classes": target.num_classes,
        "params": target.num_params(),
        "layers": info["layers"],
        "head": info["head"],
        "width_source": info["width_source"],
    }
    result.update({key: info[key] for key in ("selection", "size_specific", "calibration") if key in info})
    if plan.cfg.check:
        result["check"] = checked
    return result
