from selfalign.stages.refine import cap_list, clean_verbose

LONG = ("Photosynthesis is how plants turn light into chemical energy. In the chloroplasts, chlorophyll absorbs "
        "light, which splits water and releases oxygen; the energy is stored in sugars built from carbon dioxide.")


def test_list_is_capped_and_see_also_is_cut():
    items = "\n".join(f"{i}. Point number {i}." for i in range(1, 21))
    assert cap_list(items, 12).splitlines()[-1] == "12. Point number 12."
    assert clean_verbose(LONG + "\n\nSee also:\n- Plants\n- Light", 12) == LONG
