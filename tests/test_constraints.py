import numpy as np
import pytest

from vmat_monai.constraints import (
    PROSTATE_LAYOUT,
    SOURCE_DEFAULT,
    SOURCE_PLAN,
    ConstraintVector,
)


def test_default_vector_is_the_design_table():
    expected = [1.0, 0.8, 0.0, 0.50, 0.35, 0.20, 75 / 70, 0.50, 0.35, 0.25, 0.10, 195 / 500, 45 / 70]
    v = ConstraintVector.defaults()
    assert len(PROSTATE_LAYOUT) == 13
    np.testing.assert_allclose(v.vector, expected, rtol=1e-6)
    assert v.sources == [SOURCE_DEFAULT] * 13
    assert [s.index for s in PROSTATE_LAYOUT] == list(range(13))


def test_goals_override_with_sources_and_round_trip():
    v = ConstraintVector.from_goals({"rectum_V70": 0.1, "bowel_V45cc": 250.0, "rectum_Dmax": 73.5})
    assert v.vector[5] == pytest.approx(0.1)
    assert v.vector[11] == pytest.approx(0.5)
    assert v.vector[6] == pytest.approx(73.5 / 70)
    assert v.sources[5] == SOURCE_PLAN and v.sources[4] == SOURCE_DEFAULT
    again = ConstraintVector.from_dict(v.to_dict())
    np.testing.assert_allclose(again.natural, v.natural)
    assert again.sources == v.sources


def test_bad_values_are_rejected():
    with pytest.raises(KeyError, match="unknown constraint"):
        ConstraintVector.from_goals({"rectum_V99": 0.1})
    with pytest.raises(ValueError, match="finite"):
        ConstraintVector.from_goals({"rectum_V70": float("nan")})


def test_what_if_overrides_are_parsed_checked_and_applied():
    from vmat_monai.constraints import override_vector, parse_overrides

    o = parse_overrides(["rectum_v70=0.10", "bowel_V45cc = 150"])
    assert o == {"rectum_V70": 0.10, "bowel_V45cc": 150.0}
    v = override_vector(ConstraintVector.defaults().vector, o)
    assert v[5] == pytest.approx(0.10) and v[11] == pytest.approx(150 / 500)
    assert v[3] == pytest.approx(0.50)  # untouched entries keep their value
    for bad, msg in (("rectum_V70", "KEY=VALUE"), ("rectum_V70=abc", "not a number"), ("rectum_V70=-1", ">= 0")):
        with pytest.raises(ValueError, match=msg):
            parse_overrides([bad])
    with pytest.raises(KeyError, match="unknown constraint"):
        parse_overrides(["liver_V30=0.2"])
    with pytest.raises(ValueError, match="13 values"):
        override_vector([1.0, 2.0], o)


def test_mirror_constraint_pairs_are_the_one_sided_goals():
    """Parotid goals (one per side) trade places on a left-right flip; a goal on both femurs does not."""
    from vmat_monai.constraints import layout_for, mirror_constraint_pairs, spec
    from vmat_monai.structures import get_structure_set

    hn = get_structure_set("openkbp_hn")
    layout = layout_for(hn)
    pairs = mirror_constraint_pairs(hn)
    assert len(pairs) == 1
    assert {layout[i].key for i in pairs[0]} == {"parotid_L_Dmean", "parotid_R_Dmean"}
    assert mirror_constraint_pairs(get_structure_set("prostate_sib")) == []
    assert spec("femur_V50").structure == "Femur"
