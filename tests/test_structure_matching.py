import json

import pytest

from vmat_monai.data.synthetic.naming import HELPER_NAMES, NAME_VARIANTS
from vmat_monai.structures import PROSTATE_SIB, NameMatcher, default_mapping_path, normalise_name


@pytest.fixture(scope="module")
def matcher():
    return NameMatcher()


def test_mapping_has_at_least_a_hundred_variants():
    data = json.loads(default_mapping_path().read_text())
    n = sum(len(v.get("exact", [])) + len(v.get("variants", [])) for v in data["structures"].values())
    assert n >= 100


@pytest.mark.parametrize("canon,name", [(c, n) for c, ns in NAME_VARIANTS.items() for n in ns])
def test_real_world_names_match_their_structure(matcher, canon, name):
    assert matcher.classify(name)[0] == canon


@pytest.mark.parametrize(
    "name", [n for ns in HELPER_NAMES.values() for n in ns] + ["PTV70-Rectum", "Bladder_PRV", "zBowel"]
)
def test_helpers_are_never_organs(matcher, name):
    assert matcher.is_helper(name)
    assert matcher.classify(name) == (None, None)


@pytest.mark.parametrize(
    "name,canon",
    [
        ("Femoral Head Lt", "Femur_L"),
        ("RT FEMORAL HEAD", "Femur_R"),
        ("urinary-bladder", "Bladder"),
        ("PTV70_2-27", "PTV70"),
        ("CTV70", None),
        ("Prostate_Bed", None),
        ("Liver", None),
    ],
)
def test_specific_names(matcher, name, canon):
    assert matcher.classify(name)[0] == canon


def test_tie_break_and_report(matcher):
    names = ["Rectum_O", "RECTUM", "opt_Rectum", "Bladder", "Liver", "Femur_Head_L", "SeminalVes"]
    m = matcher.match(names, PROSTATE_SIB)
    assert m.found["Rectum"] == "RECTUM"  # exact beats the other exact? both exact: shorter name wins
    assert m.duplicates["Rectum"] == ["RECTUM", "Rectum_O"]
    assert m.helpers == ["opt_Rectum"]
    assert m.unmatched == ["Liver"]  # seminal vesicles are known but not a channel of this set
    assert set(m.missing) == {"PTV70", "PTV56", "Prostate", "Femur_R", "Bowel"}


def test_user_mapping_file(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"helper_patterns": ["^x_"], "structures": {"Rectum": {"exact": ["ENDDARM"]}}}))
    m = NameMatcher(path)
    assert m.classify("Enddarm")[0] == "Rectum"
    assert m.classify("Rectum") == (None, None)
    assert normalise_name("  Femoral-Head.Lt ") == "femoral_head_lt"
