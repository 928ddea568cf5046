import spectacles.models as models


def test_all_lists_every_public_name_and_nothing_private() -> None:
    public = {name for name in vars(models) if not name.startswith("_")}
    assert set(models.__all__) == public
    assert len(models.__all__) == len(set(models.__all__))


def test_namespace_package_has_no_init() -> None:
    import spectacles

    assert getattr(spectacles, "__file__", None) is None
