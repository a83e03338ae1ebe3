import json

import pytest

from vmat_monai.structures import OPENKBP_HN, PROSTATE_SIB, StructureSet, get_structure_set


def test_prostate_default_order_matches_design():
    assert PROSTATE_SIB.channels == ("PTV70", "PTV56", "Prostate", "Rectum", "Bladder", "Femur_L", "Femur_R", "Bowel")
    assert PROSTATE_SIB.prescription_gy == 70.0
    assert PROSTATE_SIB.primary_target == "PTV70"
    assert PROSTATE_SIB.fractions == 28
    assert get_structure_set() is PROSTATE_SIB


def test_mirror_pairs_swap_only_paired_channels():
    from vmat_monai.engine.inputs import model_inputs
    from vmat_monai.transforms.array import swap_entries

    perm = swap_entries(list(range(PROSTATE_SIB.n_channels)), model_inputs("prostate_sib").mirror_pairs)
    i, j = PROSTATE_SIB.index("Femur_L"), PROSTATE_SIB.index("Femur_R")
    assert perm[i] == j and perm[j] == i
    assert all(perm[k] == k for k in range(PROSTATE_SIB.n_channels) if k not in (i, j))
    hn = swap_entries(list(range(OPENKBP_HN.n_channels)), model_inputs("openkbp_hn").mirror_pairs)
    assert hn[OPENKBP_HN.index("LeftParotid")] == OPENKBP_HN.index("RightParotid")


def test_openkbp_set_is_chosen_by_name_and_json(tmp_path):
    assert get_structure_set("openkbp_hn").n_channels == 10
    path = tmp_path / "hn.json"
    path.write_text(json.dumps(OPENKBP_HN.to_dict()))
    loaded = get_structure_set(path)
    assert loaded == StructureSet.from_dict(OPENKBP_HN.to_dict())
    assert loaded.targets == {"PTV70": 70.0, "PTV63": 63.0, "PTV56": 56.0}


def test_invalid_sets_are_rejected():
    with pytest.raises(ValueError, match="not channels"):
        StructureSet("x", ("A",), {"B": 1.0}, ())
    with pytest.raises(KeyError, match="unknown structure set"):
        get_structure_set("nope")
    with pytest.raises(KeyError, match="not in structure set"):
        PROSTATE_SIB.index("Liver")
