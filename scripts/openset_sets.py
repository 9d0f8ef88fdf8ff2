"""Assemble the photos that are not these flowers, by kind, for `python -m core openset-eval`.

    python scripts/openset_sets.py MIRRORS OUT

MIRRORS holds git snapshots of the public repositories below (as `owner+name/repo`, the layout
the project's fetch tool makes; any `git clone --mirror` renamed so works). OUT receives

    OUT/tune/<kind>/…   ImageNet sample photos of the even-numbered ImageNet classes, and every
                        other photo of the COLLECTIONS (people, scenes, plants, other flowers):
                        the only photos any open-set choice may look at;
    OUT/eval/<kind>/…   the odd-numbered classes, the rest of the COLLECTIONS and every other photo
                        from outside ImageNet: kept out of every choice, for reporting;
    OUT/SOURCES.md      where each photo came from and under which licence.

Nothing here is committed or shipped: the photos stay where OUT is. Sampling is seeded.
"""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

# ImageNet-1k class index -> kind (the classes are in WordNet-id order, as the sample's file names)
DOGS, CATS = range(151, 269), range(281, 286)
FOOD, SCENES, PEOPLE = range(924, 970), range(970, 981), range(981, 984)
PLANTS = [984, *range(986, 999)]  # rapeseed, lady's slipper, corn, acorn, hip, buckeye, fungi, ear
IMAGENET_DAISY = 985  # one of the model's own classes: not a "non-flower"


def imagenet_kind(index: int) -> str | None:
    if index == IMAGENET_DAISY:
        return None
    if index in DOGS or index in CATS:
        return "cats and dogs"
    if index < 398:
        return "other animals"
    for kind, indices in (("food", FOOD), ("scenes", SCENES), ("people", PEOPLE), ("plants", PLANTS)):
        if index in indices:
            return kind
    return "objects"


# (repository, path in it, kind, licence) of the single photos from outside ImageNet
SINGLES = [
    ("IBM/MAX-Object-Detector", "samples/dog-human.jpg", "cats and dogs", "CC0 (Pexels)"),
    ("IBM/MAX-Object-Detector", "samples/jockey.jpg", "people", "CC0 (Pexels)"),
    ("IBM/MAX-Object-Detector", "samples/baby-bear.jpg", "other animals", "CC0 (Pexels)"),
    ("IBM/MAX-Object-Detector", "samples/a-pen-i-am.jpg", "objects", "CC0"),
    ("IBM/MAX-Image-Caption-Generator", "samples/plane.jpg", "objects", "CC0 (Pexels)"),
    ("IBM/MAX-Image-Caption-Generator", "samples/soccer.jpg", "people", "CC0 (Pexels)"),
    ("IBM/MAX-Image-Caption-Generator", "samples/surfing.jpg", "people", "CC0 (Pexels)"),
    ("IBM/MAX-Human-Pose-Estimator", "samples/Pilots.jpg", "people", "CC0 (MAX samples)"),
    ("IBM/MAX-Human-Pose-Estimator", "samples/IBM.jpeg", "people", "CC0 (MAX samples)"),
    *[("joan-morera/SpeciesNet-Improved", f"test_data/{name}.jpg", kind, "CDLA-Permissive-1.0 (LILA camera traps)")
      for name, kind in (("african_elephants", "other animals"), ("american_black_bear", "other animals"),
                         ("domestic_cattle", "other animals"), ("ocelot", "other animals"),
                         ("domestic_dog", "cats and dogs"), ("human", "people"), ("vehicle", "objects"),
                         ("blank", "scenes"), ("blank2", "scenes"), ("blank3", "scenes"))],
    *[("pjreddie/darknet", f"data/{name}.jpg", kind, "darknet's sample photos (public domain licence of the repository)")
      for name, kind in (("dog", "cats and dogs"), ("eagle", "other animals"), ("giraffe", "other animals"),
                         ("horses", "other animals"), ("person", "people"), ("kite", "scenes"))],
]
FOOD101 = ("srohit0/food_mnist", 20, "Food-101 (foodspotting.com photos; scientific fair use, see the dataset's licence)")
CLOTHING = ("alexeygrigorev/clothing-dataset-small", 100, "CC0 1.0")
# (repository, folder, kind, how many to sample for each split (None: all), licence, file names left
# out) of the collections from outside ImageNet, shared between the splits photo by photo (the ImageNet
# sample alone had too few people and plants to choose on); a photo whose bytes another one already
# has is taken once
COLLECTIONS = [
    ("serengil/deepface", "tests/unit/dataset/", "people", None,
     "press and publicity photos of public figures: their owners' copyright (the repository is MIT)",
     {"img11_reflection.jpg"}),  # a mirror image of img11
    ("ageitgey/face_recognition", "examples/", "people", None,
     "press and publicity photos of public figures: their owners' copyright (the repository is MIT)",
     {"obama-240p.jpg", "obama-480p.jpg", "obama-720p.jpg", "obama_small.jpg"}),  # obama-1080p, smaller
    ("luangtatipsy/intel-image-classification-web-app", "public/images/", "scenes", 75,
     "Intel Image Classification (buildings, forest, glacier, mountain, sea, street; 150 px): the original "
     "authors' copyright", set()),
    *[("Nicordaro/Homework2-Caltech101", f"101_ObjectCategories/{category}/", kind, 30,
       "Caltech 101 (gathered by image search; CaltechDATA lists CC BY 4.0)", set())
      for category, kind in (("bonsai", "plants"), ("joshua_tree", "plants"),
                             ("lotus", "other flowers"), ("water_lilly", "other flowers"))],
]
IMAGENET = ("EliSchwartz/imagenet-sample-images",
            "ImageNet (ILSVRC-2012) photos: their owners' copyright, ImageNet's terms (non-commercial research)")


def git(mirrors: Path, repo: str, *args: str) -> bytes:
    path = mirrors / repo.replace("/", "+") / "repo"
    path = path / ".git" if (path / ".git").is_dir() else path  # a snapshot with a work tree
    return subprocess.run(["git", f"--git-dir={path}", *args], check=True, capture_output=True).stdout


def files(mirrors: Path, repo: str) -> list[str]:
    return git(mirrors, repo, "ls-tree", "-r", "--name-only", "HEAD").decode().splitlines()


def copy(mirrors: Path, repo: str, path: str, to: Path) -> None:
    to.parent.mkdir(parents=True, exist_ok=True)
    to.write_bytes(git(mirrors, repo, "show", f"HEAD:{path}"))


def _unique_photos(mirrors: Path, repo: str, folder: str, left_out: set[str]) -> list[str]:
    seen: dict[str, str] = {}  # git blob id -> path: the same bytes under two names count once
    for line in git(mirrors, repo, "ls-tree", "-r", "HEAD").decode().splitlines():
        meta, path = line.split("\t", 1)
        if (path.startswith(folder) and path.lower().endswith((".jpg", ".jpeg", ".png"))
                and Path(path).name not in left_out):
            seen.setdefault(meta.split()[2], path)
    return list(seen.values())


def main(mirrors: Path, out: Path) -> None:
    rng = random.Random(0)
    sources = ["| split / kind | photos | source | licence |", "| --- | --- | --- | --- |"]
    counts: dict[tuple[str, str, str], int] = {}

    def put(split: str, kind: str, repo: str, path: str, licence: str, flat: bool = False) -> None:
        name = path.replace("/", "_") if flat else Path(path).name  # flat: a collection's names repeat in folders
        copy(mirrors, repo, path, out / split / kind / f"{repo.split('/')[1]}-{name}")
        key = (f"{split} / {kind}", repo, licence)
        counts[key] = counts.get(key, 0) + 1

    photos = [f for f in files(mirrors, IMAGENET[0]) if f.endswith(".JPEG")]
    assert len(photos) == 1000, len(photos)
    for index, path in enumerate(sorted(photos)):
        if (kind := imagenet_kind(index)) is not None:
            put("tune" if index % 2 == 0 else "eval", kind, IMAGENET[0], path, IMAGENET[1])
    food = [f for f in files(mirrors, FOOD101[0]) if f.startswith("images/") and f.count("/") == 2 and f.endswith(".jpg")]
    for dish in sorted({Path(f).parent.name for f in food}):
        for path in rng.sample(sorted(f for f in food if Path(f).parent.name == dish), FOOD101[1]):
            put("eval", "food", FOOD101[0], path, FOOD101[2])
    clothes = sorted(f for f in files(mirrors, CLOTHING[0]) if f.startswith("test/") and f.endswith(".jpg"))
    for path in rng.sample(clothes, CLOTHING[1]):
        put("eval", "objects", CLOTHING[0], path, CLOTHING[2])
    for repo, path, kind, licence in SINGLES:
        put("eval", kind, repo, path, licence)
    for repo, folder, kind, n, licence, left_out in COLLECTIONS:
        photos = sorted(_unique_photos(mirrors, repo, folder, left_out))
        for i, path in enumerate(photos if n is None else rng.sample(photos, min(2 * n, len(photos)))):
            put("tune" if i % 2 == 0 else "eval", kind, repo, path, licence, flat=True)
    sources += [f"| {where} | {n} | [{repo}](https://github.com/{repo}) | {licence} |"
                for (where, repo, licence), n in sorted(counts.items())]
    (out / "SOURCES.md").write_text("\n".join(sources) + "\n")
    for split in ("tune", "eval"):
        print(split, {d.name: len(list(d.iterdir())) for d in sorted((out / split).iterdir())})


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
