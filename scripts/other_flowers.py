"""Other flowers against the open-set check, on Oxford's 102 Flowers: does the check keep that
collection's photos of the model's own flowers, how many of the other species does it take for one
of them, and what a second test ("closer to the model's flowers than to other species") would do,
for the species it has seen and for those it has not.

    python scripts/other_flowers.py MIRRORS [--model-dir M] [--eval OUT/eval] [--cost 0.01]

MIRRORS holds a git snapshot of `udacity/aipnd-project` (as `owner+name/repo`, the project's fetch
layout): its history holds Oxford's 102 Flowers (8189 photos, `flowers/{train,valid,test}/<id>/`,
class names in `cat_to_name.json`; the authors state no licence). The photos are read from git into
memory, a chunk at a time; nothing is written. `--eval`: the evaluation split of
`scripts/openset_sets.py`, for its other flowers (Caltech lotus and water lilies) and the rest.
docs/lab-log.md ("Other flowers pass for these five") quotes its output. Nothing here is used by the app.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.model import data, imagenet, openset, registry  # noqa: E402
from core.model.images import to_model_input  # noqa: E402

REPO, COMMIT = "udacity/aipnd-project", "982f44cce96f07948da0d52867dfda6b57ef5a23"  # the last commit with the photos
THE_FIVE = {"oxeye daisy", "common dandelion", "sunflower", "rose"}  # Oxford's names for four of flower_photos' five
KEPT_UNSEEN = {"lotus lotus", "water lily"}  # the Caltech species of the evaluation split: never a reference


def git(mirrors: Path, *args: str) -> bytes:
    path = mirrors / REPO.replace("/", "+") / "repo"
    return subprocess.run(["git", f"--git-dir={path}", *args], check=True, capture_output=True).stdout


def oxford(mirrors: Path) -> tuple[list[str], np.ndarray, list[str], dict[int, str]]:
    """Paths, class ids, splits and class names of the 8189 photos."""
    names = {int(k): v for k, v in json.loads(git(mirrors, "show", f"{COMMIT}:cat_to_name.json")).items()}
    paths = sorted(p for p in git(mirrors, "ls-tree", "-r", "--name-only", COMMIT, "flowers/").decode().splitlines()
                   if p.endswith(".jpg"))
    return paths, np.array([int(p.split("/")[2]) for p in paths]), [p.split("/")[1] for p in paths], names


def judged_from_git(mirrors: Path, paths: list[str]) -> imagenet.Opinion:
    opinions = []
    for i, path in enumerate(paths):
        photo = Image.open(io.BytesIO(git(mirrors, "show", f"{COMMIT}:{path}"))).convert("RGB")
        opinions.append(imagenet.judge().opinion(to_model_input(photo, imagenet.SIZE)[None]))
        if i % 500 == 0:
            print(f"  {i} of {len(paths)}", file=sys.stderr)
    return imagenet.Opinion.concatenate(opinions)


def judged_items(items: list) -> imagenet.Opinion:
    x, _, _ = data.load_arrays(items, imagenet.SIZE)
    return imagenet.judge_each(x)


def second_test(check: openset.ImageNetCheck, others: imagenet.Opinion, flowers: imagenet.Opinion,
                cost: float) -> Callable[[imagenet.Opinion], np.ndarray]:
    """The check, and closer to its reference flowers than to `others` by a margin that `cost` of
    `flowers` fall under."""
    apart = dataclasses.replace(check, neighbours=others.features / np.linalg.norm(
        others.features, axis=1, keepdims=True))  # the same check, other species to compare with

    def margin(j: imagenet.Opinion) -> np.ndarray:
        return check.similarity(j) - apart.similarity(j)

    threshold = float(np.quantile(margin(flowers), cost))
    return lambda j: (check.typicality(j) >= check.threshold) & (margin(j) >= threshold)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mirrors", type=Path)
    parser.add_argument("--model-dir", type=Path, default=Path("models/flowers-efficientnet-lite0"))
    parser.add_argument("--eval", type=Path, default=None)
    parser.add_argument("--cost", type=float, default=0.01, help="share of flowers the second test may reject")
    args = parser.parse_args()
    card = registry.read_card(args.model_dir)
    check = openset.from_card(card.openset, args.model_dir).imagenet
    if check is None:
        raise SystemExit(f"{card.name} has no ImageNet check; run `python -m core calibrate`")
    paths, ids, splits, names = oxford(args.mirrors)
    judged = judged_from_git(args.mirrors, paths)
    taken = check.typicality(judged) >= check.threshold
    five = np.isin(ids, [k for k, n in names.items() if n in THE_FIVE])
    print(f"{card.name}: Oxford's photos of the five kept {taken[five].mean():.1%} of {five.sum()}; "
          f"its other species taken for one of the five {taken[~five].mean():.1%} of {(~five).sum()}")
    per_species = sorted((taken[ids == k].mean(), names[k]) for k in np.unique(ids[~five]))
    print("  least taken: " + ", ".join(f"{n} {a:.0%}" for a, n in per_species[:5]))

    # The second test: closer to the five than to photos of other species, at a threshold that
    # rejects `cost` of the flowers the check's own threshold comes from (validation and other
    # training photos), besides the check. Once with the training photos of all the other species
    # as references, once with those of every second species only: the rest are then unseen, as
    # a stranger's flower would be.
    split = card.rebuild_split()
    flowers = judged_items(split.val + openset.imagenet_check_photos(split)[1])
    held_out = judged_items(split.test or split.val)
    kept_unseen = np.isin(ids, [k for k, n in names.items() if n in KEPT_UNSEEN])
    species = np.unique(ids[~five & ~kept_unseen])
    verdicts = {}
    for label, references in (("all other species", species), ("every second species", species[::2])):
        others = np.flatnonzero(np.isin(ids, references) & (np.array(splits) == "train"))
        verdict = verdicts[label] = second_test(check, judged.take(others), flowers, args.cost)
        seen_test = np.isin(ids, references) & (np.array(splits) == "test")
        unseen = ~five & ~kept_unseen & ~np.isin(ids, references)
        line = (f"second test at {args.cost:.0%} of flowers, references {label} ({len(others)} photos): "
                f"held-out flowers kept {verdict(held_out).mean():.1%} (without it "
                f"{(check.typicality(held_out) >= check.threshold).mean():.1%}), Oxford's five kept "
                f"{verdict(judged.take(five)).mean():.1%}, test photos of the reference species taken "
                f"{verdict(judged.take(seen_test)).mean():.1%} (without it {taken[seen_test].mean():.1%})")
        if unseen.any():
            line += (f", photos of the {len(np.unique(ids[unseen]))} species left out taken "
                     f"{verdict(judged.take(unseen)).mean():.1%} (without it {taken[unseen].mean():.1%})")
        print(line)
    if args.eval:  # the kinds of the evaluation split, with all other species as references
        verdict = verdicts["all other species"]
        info = data.scan(args.eval, min_images=1)
        for kind in info.classes:
            j = judged_items([(f, 0) for f in info.files[kind]])
            print(f"  {kind}: taken {verdict(j).mean():.1%} (without it {(check.typicality(j) >= check.threshold).mean():.1%}) of {len(j)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
