"""The model-input spec: one derivation of channels, pairs and prior settings from a structure set."""

from __future__ import annotations

import pytest

from vmat_monai.constraints import OPENKBP_LAYOUT, PROSTATE_LAYOUT
from vmat_monai.engine.inputs import model_inputs
from vmat_monai.structures import OPENKBP_HN, PROSTATE_SIB


def test_prostate_spec_with_the_default_prior():
    spec = model_inputs("prostate_sib")
    assert spec.layout == PROSTATE_LAYOUT and spec.n_constraints == 13
    assert spec.in_channels == 1 + 8 + 1
    assert spec.target_channels == [PROSTATE_SIB.index("PTV70"), PROSTATE_SIB.index("PTV56")]
    assert spec.target_levels == [70.0, 56.0] and spec.prior_levels == [70.0, 56.0] and spec.prior_sectors == 1
    assert spec.primary_channel == PROSTATE_SIB.index("PTV70")
    femurs = (PROSTATE_SIB.index("Femur_L"), PROSTATE_SIB.index("Femur_R"))
    assert spec.mirror_pairs == [femurs] and spec.input_pairs == [(1 + femurs[0], 1 + femurs[1])]
    assert spec.constraint_pairs == []  # one femur goal covers both heads
    assert PROSTATE_SIB.index("Rectum") in spec.organ_channels and spec.primary_channel not in spec.organ_channels


def test_head_and_neck_spec_and_prior_channel_counts():
    spec = model_inputs("openkbp_hn", prior_channels=3)
    assert spec.layout == OPENKBP_LAYOUT and spec.in_channels == 1 + OPENKBP_HN.n_channels + 3
    assert spec.target_levels == [70.0, 63.0, 56.0] and spec.prior_sectors == 3
    assert spec.constraint_pairs == [(6, 5)] or spec.constraint_pairs == [(5, 6)]  # the parotids' Dmean goals
    none = model_inputs("openkbp_hn", prior_channels=0)
    assert none.in_channels == 1 + OPENKBP_HN.n_channels and none.prior_levels is None and none.prior_sectors == 1
    assert none.preset_kwargs() == {
        "target_channels": none.target_channels,
        "n_constraints": 10,
        "prior_levels": None,
        "prior_sectors": 1,
        "prior_beams": "arc360",
        "prior_case_beams": True,
    }
    nine = model_inputs("openkbp_hn", 1, "openkbp_9field", "protocol").preset_kwargs()
    assert nine["prior_beams"] == "openkbp_9field" and nine["prior_case_beams"] is False


def test_unsupported_prior_channel_count_is_refused():
    with pytest.raises(ValueError, match="prior_channels must be one of"):
        model_inputs(prior_channels=2)
    with pytest.raises(KeyError, match=r"known: .*arc360"):
        model_inputs(prior_protocol="arc180")
    with pytest.raises(ValueError, match="prior_source must be one of"):
        model_inputs(prior_source="rtplan")
