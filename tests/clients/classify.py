"""Classify images with an app-side client library, as an app would: ``python classify.py CLIENT MODEL IMAGES.npy``.

Runs in the clients' own venv (.venv-clients: mediapipe and tflite-support, whose pins clash with TensorFlow's), not
edgekit's: it imports neither edgekit nor TensorFlow. ``IMAGES.npy``: uint8 (N, H, W, 3) RGB pixels. Prints one JSON
line: ``{"top": [[index, name, score], ...]}`` (top-1 per image) or ``{"error": "..."}`` (exit 3) when the client
refuses the model.
"""
from __future__ import annotations

import json
import sys

import numpy as np


def mediapipe_top1(model: str, images: np.ndarray):
    import mediapipe as mp
    from mediapipe.tasks.python import vision
    from mediapipe.tasks.python.core.base_options import BaseOptions

    opts = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=model), max_results=1)
    with vision.ImageClassifier.create_from_options(opts) as clf:
        for img in images:
            res = clf.classify(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(img)))
            c = res.classifications[0].categories[0]
            yield [int(c.index), c.category_name, float(c.score)]


def tasklib_top1(model: str, images: np.ndarray):
    from tflite_support.task import core, processor, vision

    opts = vision.ImageClassifierOptions(base_options=core.BaseOptions(file_name=model),
                                         classification_options=processor.ClassificationOptions(max_results=1))
    clf = vision.ImageClassifier.create_from_options(opts)
    for img in images:
        res = clf.classify(vision.TensorImage.create_from_array(np.ascontiguousarray(img)))
        c = res.classifications[0].categories[0]
        yield [int(c.index), c.category_name, float(c.score)]


CLIENTS = {"mediapipe": mediapipe_top1, "tasklib": tasklib_top1}


def main(argv: list[str]) -> int:
    client, model, images = argv
    try:
        top = list(CLIENTS[client](model, np.load(images)))
    except (RuntimeError, ValueError) as exc:
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
        return 3
    print(json.dumps({"top": top}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
