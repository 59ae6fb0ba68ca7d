"""Carry a one-seed bench (results.json lgtool-bench/3, from before lgtool bench had seeds, or a one-seed
lgtool-bench/4) into a new bench folder, so that `lgtool bench --resume --seeds 0,1,2 ...` adds the other seeds
without redoing the first one's rows.

    python examples/bench_to_seeds.py docs/bench-full/fmnist-vit bench/full-vit
    lgtool bench --resume -o bench/full-vit --seeds 0,1,2 --test-samples 10000 <the old run's flags>

Nothing is retrained here: the rows, the learngenes and their costs are copied, each row marked seed 0. The old
bench reported on the whole test split, so the new folder records --test-samples 10000 with the old settings; a
resume with any other setting is refused. Whether seed 0 reproduces under the current code is worth checking:
delete one cheap row from the new results.json and compare what the resume recomputes with the old row.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

FULL_TEST_SPLIT = 10_000  # Fashion-MNIST's: benches before lgtool-bench/4 reported on all of it


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("old", type=Path, help="a bench folder whose results.json is lgtool-bench/3")
    ap.add_argument("new", type=Path, help="a folder that does not exist yet")
    args = ap.parse_args()
    old = json.loads((args.old / "results.json").read_text())
    if old.get("schema") == "lgtool-bench/3":
        config = {k: v for k, v in old["config"].items() if k != "seed"}
        config.update(seeds=[old["config"].get("seed", 0)], tie_margin=None, test_samples=FULL_TEST_SPLIT)
        seed = config["seeds"][0]
        rows, learned = [{**row, "seed": seed} for row in old["rows"]], old["learngenes"]
    elif old.get("schema") == "lgtool-bench/4" and len(old["config"]["seeds"]) == 1:  # one already recosted
        config, seed = old["config"], old["config"]["seeds"][0]
        rows, learned = old["rows"], old["learned"][str(seed)]
    else:
        raise SystemExit(f"{args.old}/results.json is neither lgtool-bench/3 nor a one-seed lgtool-bench/4")
    genes = args.new / "learngenes" / f"s{seed}"
    genes.mkdir(parents=True)  # refuses an existing folder: nothing is overwritten
    copied = {}
    for method, info in learned.items():
        name = Path(info["path"]).name
        shutil.copy2(args.old / "learngenes" / name, genes / name)
        copied[method] = {**info, "path": str(genes / name)}
    new = {"schema": "lgtool-bench/4", "config": config, "ancestor": old["ancestor"], "learned": {str(seed): copied},
           "rows": rows}  # fmt: skip
    (args.new / "results.json").write_text(json.dumps(new, indent=1))
    print(f"{args.new}: {len(rows)} rows and {len(copied)} learngenes as seed {seed}")


if __name__ == "__main__":
    main()
