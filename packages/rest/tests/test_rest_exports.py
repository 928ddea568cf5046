import spectacles.rest
import spectacles.rest.proxy


def test_all_lists_every_public_name() -> None:
    for module in (spectacles.rest, spectacles.rest.proxy):
        public = {n for n in vars(module) if not n.startswith("_")} - {"annotations"}
        public = {n for n in public if not isinstance(getattr(module, n), type(spectacles))}
        assert set(module.__all__) == public, module.__name__
