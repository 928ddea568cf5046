import importlib

import spectacles.rest
import spectacles.rest.proxy


def test_all_lists_every_public_name() -> None:
    # The packages load their names lazily: what __all__ promises must resolve, and be all there is.
    for module in (spectacles.rest, spectacles.rest.proxy):
        public = {n for n in dir(module) if not n.startswith("_")} - {"annotations"}
        public = {n for n in public if not isinstance(getattr(module, n), type(spectacles))}
        public -= {"TYPE_CHECKING", "Any", "importlib"}
        assert set(module.__all__) == public, module.__name__
        for name in module.__all__:
            assert getattr(importlib.import_module(module.__name__), name) is not None
