"""The locatability teacher: manifest fractions and a (tiny, random) ADE20K segmenter."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from georay.curate.teacher import TEACHER, with_teacher
from georay.data.ade20k import NUM_CLASSES

# ../shared/data/README.md worked example (class_id: area fraction) -> 0.4867.
WORKED = {
    1: 0.19507864, 2: 0.33347809, 4: 0.04688785, 6: 0.36356136, 9: 0.03862819,
    11: 0.01227770, 12: 0.00012079, 20: 0.00405273, 43: 0.00023001, 53: 0.00137233,
    59: 0.00003341, 87: 0.00021973, 93: 0.00200966, 138: 0.00204950,
}  # fmt: skip


def _dense(sparse: dict[int, float]) -> list[float]:
    out = np.zeros(NUM_CLASSES, dtype=np.float32)
    for k, v in sparse.items():
        out[k] = v
    return out.tolist()


def test_manifest_fractions_reproduce_the_worked_example():
    table = pa.table(
        {
            "image_id": ["a", "b", "c"],
            "ade20k_fractions": pa.array(
                [_dense(WORKED), None, [0.5, 0.5]], pa.list_(pa.float32())
            ),
        }
    )
    scores = with_teacher(table)[TEACHER].to_pylist()
    assert round(scores[0], 4) == 0.4867
    assert scores[1:] == [None, None]  # missing and malformed lists give no label


def test_without_fractions_the_teacher_column_is_null():
    out = with_teacher(pa.table({"image_id": ["a"]}))
    assert out[TEACHER].null_count == 1 and out.schema.field(TEACHER).type == pa.float32()


def test_segmenter_fractions_sum_to_one_and_reload(tmp_path):
    from georay.models.segmenter import class_fractions, load_segmenter, tiny_segformer

    tiny_segformer(str(tmp_path))
    model, processor = load_segmenter(str(tmp_path))
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(2)]
    frac = class_fractions(model, processor, images)
    assert frac.shape == (2, NUM_CLASSES)
    np.testing.assert_allclose(frac.sum(1), 1.0, atol=1e-5)
    assert (frac >= 0).all()


def test_segmenter_with_other_label_set_is_refused(tmp_path):
    from transformers import SegformerConfig, SegformerForSemanticSegmentation
    from transformers import SegformerImageProcessor as Processor

    cfg = SegformerConfig(depths=[1] * 4, hidden_sizes=[8] * 4, num_attention_heads=[1] * 4,
                          decoder_hidden_size=8, num_labels=19)  # fmt: skip
    SegformerForSemanticSegmentation(cfg).save_pretrained(tmp_path)
    Processor().save_pretrained(tmp_path)
    from georay.models.segmenter import load_segmenter

    with pytest.raises(ValueError, match="ADE20K-150"):
        load_segmenter(str(tmp_path))
