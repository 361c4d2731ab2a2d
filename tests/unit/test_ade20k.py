import numpy as np
import pytest

from georay.data import ade20k

# The worked example in ../shared/data/README.md (class_id: area fraction) -> 0.4867.
WORKED = {
    1: 0.19507864, 2: 0.33347809, 4: 0.04688785, 6: 0.36356136, 9: 0.03862819,
    11: 0.01227770, 12: 0.00012079, 20: 0.00405273, 43: 0.00023001, 53: 0.00137233,
    59: 0.00003341, 87: 0.00021973, 93: 0.00200966, 138: 0.00204950,
}  # fmt: skip


def test_worked_example_matches_published_value():
    assert round(ade20k.locatability(WORKED), 4) == 0.4867


def test_dense_and_sparse_forms_agree():
    dense = np.zeros(ade20k.NUM_CLASSES)
    for k, v in WORKED.items():
        dense[k] = v
    batch = np.stack([dense, dense * 0.5])
    np.testing.assert_allclose(ade20k.locatability(batch), [0.4867, 0.4867 / 2], atol=1e-4)
    assert ade20k.locatability(dense) == pytest.approx(ade20k.locatability(WORKED))


def test_weights_match_the_shipped_reference(shared_data):
    import csv

    rows = list(csv.DictReader((shared_data / "ade20k_locatability_weights.csv").open()))
    expected = np.array([float(r["weight"]) for r in rows])
    np.testing.assert_array_equal(ade20k.locatability_weights(), expected)
    assert ade20k.class_names()[int(rows[6]["class_id"])] == rows[6]["class_name"]


def test_named_classes_and_published_weights():
    weights = ade20k.locatability_weights()
    assert weights[ade20k.class_id("road")] == pytest.approx(1.0)
    assert weights[ade20k.class_id("signboard")] == pytest.approx(0.49, abs=0.01)
    with pytest.raises(KeyError):
        ade20k.class_id("unicorn")


def test_wrong_shape_is_rejected():
    with pytest.raises(ValueError, match="150"):
        ade20k.locatability(np.zeros(10))
