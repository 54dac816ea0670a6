"""A local helper module: envpack copies it into the image because the notebook imports it."""

import numpy as np


def summary(values):
    """Mean and standard deviation, rounded for stable printing."""
    arr = np.asarray(values, dtype=float)
    return {
        "n": int(arr.size),
        "mean": round(float(arr.mean()), 6),
        "std": round(float(arr.std()), 6),
    }
