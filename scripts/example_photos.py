"""Make `examples/`: the photos Predict offers with one tap, and their credits.

One photo per class from the shipped models' held-out split (seed 123, 10% validation, 10% held
out, of the 2934-photo copy of `flower_photos`): the first of each class in the split's order,
skipping a photo whose flowers are not its subject (`SKIPPED`, chosen by looking at the photo,
never at a model's answer). The non-flower is scikit-image's coffee cup (CC0). The flower photos
are Flickr photos under CC BY 2.0; each file name starts with its Flickr photo id, whose page
names the photographer (the official archive's LICENSE.txt lists the same credits).

    python scripts/example_photos.py [--data ../shared/flowers/flower_photos.tgz]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core import atomic  # noqa: E402
from core.app.examples import EXAMPLES_DIR, MANIFEST  # noqa: E402
from core.model import registry  # noqa: E402

SKIPPED = {"tulips/7068715863_a534ac7884_n.jpg": "a street; the tulips are a distant flowerbed"}
FLICKR = "https://www.flickr.com/photo.gne?id={}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "flowers" / "flower_photos.tgz"))
    args = parser.parse_args()
    card = registry.read_card(ROOT / "models" / registry.DEFAULT_MODEL)
    split = card.rebuild_split(args.data)
    first: dict[str, Path] = {}
    for path, label in split.test:
        name = f"{card.classes[label]}/{path.name}"
        if name not in SKIPPED:
            first.setdefault(card.classes[label], path)
    photos = []
    for cls, path in first.items():
        (EXAMPLES_DIR / f"{cls}.jpg").write_bytes(path.read_bytes())
        flickr_id = path.name.split("_")[0]
        photos.append({"file": f"{cls}.jpg", "true_class": cls, "origin": f"flower_photos/{cls}/{path.name}",
                       "credit": f"Flickr photo {flickr_id}", "link": FLICKR.format(flickr_id),
                       "licence": "CC BY 2.0", "licence_link": "https://creativecommons.org/licenses/by/2.0/"})
    from PIL import Image
    from skimage import data as skimage_data

    Image.fromarray(skimage_data.coffee()).save(EXAMPLES_DIR / "coffee.jpg", quality=88)
    photos.append({"file": "coffee.jpg", "true_class": None, "origin": "scikit-image's data.coffee()",
                   "credit": "Rachel Michetti (Pikolo Espresso Bar), via scikit-image", "link":
                   "https://scikit-image.org/docs/stable/api/skimage.data.html#skimage.data.coffee",
                   "licence": "CC0 1.0", "licence_link": "https://creativecommons.org/publicdomain/zero/1.0/"})
    s = card.data.split
    atomic.write_json(EXAMPLES_DIR / MANIFEST, {
        "dataset": "flower_photos", "n_images": card.data.n_images, "classes": list(card.classes),
        "split": {"val_fraction": s.val_fraction, "test_fraction": s.test_fraction, "seed": s.seed,
                  "val_fold": s.val_fold},
        "skipped": SKIPPED, "photos": photos})
    print(f"{len(photos)} photos in {EXAMPLES_DIR}")


if __name__ == "__main__":
    main()
