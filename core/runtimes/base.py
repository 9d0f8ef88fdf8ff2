"""The one interface every runtime answers through (`core.runtimes.backends` makes them)."""

from __future__ import annotations

from typing import Any

import numpy as np


class Backend:
    """Base: `predict(uint8 NHWC) -> probabilities`, plus what it ran with."""

    variant: str
    image_size: int
    load_seconds: float = 0.0
    static_batch: int | None = None  # only OpenVINO compiles for one fixed batch size

    def predict(self, images: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def infer(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(probabilities, penultimate features or None where the runtime's model has no such output)."""
        return self.predict(images), None

    def settings(self) -> dict[str, Any]:
        raise NotImplementedError

    def _check(self, images: np.ndarray) -> np.ndarray:
        if images.ndim == 3:
            images = images[None]
        expected = (self.image_size, self.image_size, 3)
        if images.shape[1:] != expected or images.dtype != np.uint8:
            raise ValueError(f"expected uint8 images of shape (N, {expected}), got {images.dtype} {images.shape}")
        return images
