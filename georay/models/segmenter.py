"""ADE20K-150 semantic segmenters (the locatability *teacher*): images -> class-area fractions.

Any ``transformers`` ADE20K checkpoint works: SegFormer/BEiT/UperNet style models through
``AutoModelForSemanticSegmentation``, MaskFormer/Mask2Former/OneFormer through
``AutoModelForUniversalSegmentation``; both are post-processed by their image processor's
``post_process_semantic_segmentation`` into one label map per image. Weights come from a local
folder, an ``s3://`` prefix (downloaded to a temp folder) or a hub id. ``tiny_segformer`` builds
a random 150-class SegFormer in code for tests.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
import torch

from georay.data.ade20k import NUM_CLASSES

UNIVERSAL = ("maskformer", "mask2former", "oneformer")


def _local(path: str) -> str:
    """A local folder for ``path``: S3 prefixes are copied down, other values returned as is."""
    from georay.data.storage import is_s3, list_files, read_bytes

    if not is_s3(path):
        return path
    dest = tempfile.mkdtemp(prefix="georay-segmenter-")
    prefix = path.rstrip("/") + "/"
    for uri in list_files(path):
        target = os.path.join(dest, uri[len(prefix) :])
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as f:
            f.write(read_bytes(uri))
    return dest


def load_segmenter(path: str, device: str = "cpu"):
    """Load an ADE20K-150 segmenter (a ``transformers`` checkpoint: local folder, ``s3://``
    prefix or hub id) and its image processor.

    Raises
    ------
    ValueError
        The model does not predict the 150 ADE20K classes.
    """
    from transformers import (
        AutoConfig,
        AutoImageProcessor,
        AutoModelForSemanticSegmentation,
        AutoModelForUniversalSegmentation,
    )

    path = _local(path)
    config = AutoConfig.from_pretrained(path)
    auto = (
        AutoModelForUniversalSegmentation
        if config.model_type in UNIVERSAL
        else AutoModelForSemanticSegmentation
    )
    model = auto.from_pretrained(path).eval().to(device)
    labels = len(model.config.id2label)
    if labels != NUM_CLASSES:
        raise ValueError(f"{path}: expected an ADE20K-150 segmenter, got {labels} labels")
    return model, AutoImageProcessor.from_pretrained(path)


@torch.inference_mode()
def class_fractions(model, processor, images: list[np.ndarray] | np.ndarray) -> np.ndarray:
    """Per-class area fractions of each RGB uint8 image, ``(n, 150)`` float32, rows summing to
    1; label maps are resized back to each image's size, so fractions are of its own pixels."""
    images = list(images)
    inputs = processor(images=images, return_tensors="pt").to(model.device)
    outputs = model(**inputs)
    sizes = [img.shape[:2] for img in images]
    maps = processor.post_process_semantic_segmentation(outputs, target_sizes=sizes)
    out = np.zeros((len(images), NUM_CLASSES), dtype=np.float32)
    for i, labels in enumerate(maps):
        counts = torch.bincount(labels.flatten().long(), minlength=NUM_CLASSES)[:NUM_CLASSES]
        out[i] = (counts.float() / counts.sum().clamp(min=1)).cpu().numpy()
    return out


def tiny_segformer(save_dir: str | None = None, seed: int = 0, side: int = 64):
    """A random-init 150-class SegFormer (~50K parameters) and processor, built in code.

    With ``save_dir`` both are saved there, so :func:`load_segmenter` exercises the same loading
    path as real weights.
    """
    from transformers import SegformerConfig, SegformerForSemanticSegmentation
    from transformers import SegformerImageProcessor as Processor

    from georay.data.ade20k import class_names

    torch.manual_seed(seed)
    config = SegformerConfig(
        depths=[1, 1, 1, 1],
        hidden_sizes=[8, 16, 24, 32],
        num_attention_heads=[1, 1, 1, 1],
        decoder_hidden_size=32,
        num_labels=NUM_CLASSES,
        id2label=dict(enumerate(class_names())),
        label2id={n: i for i, n in enumerate(class_names())},
    )
    model = SegformerForSemanticSegmentation(config).eval()
    processor = Processor(size={"height": side, "width": side})
    if save_dir:
        model.save_pretrained(save_dir)
        processor.save_pretrained(save_dir)
    return model, processor
