"""What a participant reads and presses, without a browser: consecutive questions of one image never share a key,
no two options read alike, class names read as haematologists write them; the admin page's waits."""
from __future__ import annotations

import pytest

from cytocore.schema import CANNOT_TELL
from study_app.serve.labels import (auth_options, class_confidence_options, class_keys, class_name, class_options,
                                    class_phrase)
from study_app.serve.monitoring import wait_text

PBC = ["basophil", "eosinophil", "erythroblast", "ig", "lymphocyte", "monocyte", "neutrophil", "platelet"]
LABELS = ["Guessing", "Somewhat sure", "Fairly sure", "Certain"]


@pytest.mark.parametrize("K", [2, 3, 4])
@pytest.mark.parametrize("classes", [PBC, ["alpha", "beta", "gamma"], ["a_b", "a_c", "a_d", "aa"]])
def test_consecutive_questions_of_an_image_share_no_key(K, classes):
    auth = {o.key for o in auth_options(K, "percent", LABELS[:K])}
    cls = {o.key for o in class_options(classes, CANNOT_TELL)}
    conf = {o.key for o in class_confidence_options(K, "percent", LABELS[:K], len(classes))} | {"BACKSPACE"}
    assert None not in auth | cls | conf                      # every option has a key
    assert not auth & cls and not cls & conf                  # a double press finds nothing to answer
    assert len(auth) == 2 * K and len(cls) == len(classes) + 1 and len(conf) == K + 1


def test_cell_types_get_their_initials_where_they_can():
    keys = class_keys(PBC)
    assert (keys["basophil"], keys["eosinophil"], keys["ig"], keys["lymphocyte"], keys["neutrophil"]) == \
        ("B", "E", "I", "L", "N")
    assert keys["erythroblast"] == "R"                        # E is the eosinophil's: the next letter of its name
    assert len(set(keys.values())) == len(PBC)
    many = class_keys([f"c{i}" for i in range(30)])           # past 26 types: click only
    assert sum(v is None for v in many.values()) == 4 and len({v for v in many.values() if v}) == 26


def test_names_read_as_haematologists_write_them():
    assert class_name("ig") == "Immature granulocyte" and class_name("IG") == "Immature granulocyte"
    assert class_name("band_neutrophil") == "Band neutrophil"
    assert class_phrase("ig") == "an immature granulocyte" and class_phrase("neutrophil") == "a neutrophil"
    assert [o.text for o in class_options(["ig"], CANNOT_TELL)] == ["Immature granulocyte", "Cannot tell"]


@pytest.mark.parametrize("style", ["percent", "labels"])
def test_no_two_options_of_a_scale_read_alike(style):
    opts = auth_options(4, style, LABELS)
    texts = [o.text for o in opts]
    assert len(set(texts)) == len(texts), texts
    if style == "percent":
        assert texts == ["100 % AI", "83 % AI", "67 % AI", "50 % AI", "50 % real", "67 % real", "83 % real",
                         "100 % real"]
    assert [o.key for o in opts] == list("12345678") and [o.side for o in opts] == ["synthetic"] * 4 + ["real"] * 4
    assert opts[0].label() == f"`1` {texts[0]}"               # the key as inline code: hidden on touch screens


def test_the_admin_page_never_says_wait_0_s():
    assert [wait_text(s) for s in (0.0, 0.2, 0.99, 1.0, 1.01, 7.6)] == ["1 s", "1 s", "1 s", "1 s", "2 s", "8 s"]
