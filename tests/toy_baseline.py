"""A fifth baseline that exists only in the tests: weight selection from the ancestor's top blocks down.

It proves the baseline interface: registered in `BASELINES` (one line), the bench starts it, picks its layer policy,
races it, records its rows, resumes them and costs it as an alternative without any other file knowing its name."""

from lgtool.base.errors import InputError
from lgtool.baselines import weight_selection

DISTILS = False
RACE_ORDER = 5  # before every other baseline
REFERENCE = False
POLICIES = weight_selection.POLICIES
policies = weight_selection.policies


def start(ancestor, target, seed, policy):
    """Weight selection from the ancestor with its blocks in reverse order: its last block first."""
    if not hasattr(ancestor, "blocks"):
        raise InputError("the ancestor has no blocks to turn over")
    depth = len(ancestor.blocks)
    flipped = {_flip(key, depth): value for key, value in ancestor.state_dict().items()}
    model, done = weight_selection.selected_model(flipped, target, policy, seed)
    return model, {"layers": [depth - 1 - i for i in done["layers"]], "head": done["head"]}


def expand_args(entry, shape):
    return None  # no command makes it: recipe.sh trains it as scratch (a toy)


def _flip(key: str, depth: int) -> str:
    if not key.startswith("blocks."):
        return key
    _, index, rest = key.split(".", 2)
    return f"blocks.{depth - 1 - int(index)}.{rest}"
