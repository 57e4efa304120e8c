"""Our config classes in transformers' Auto classes, registered when transformers loads those classes, not before.

What is registered: ``AutoConfig`` resolves the model types ``bertpatent`` (BERT patent classifiers) and
``modernpatent`` (ModernBERT checkpoints saved before the stock format), and ``AutoModel`` /
``AutoModelForSequenceClassification`` build our classes for our config classes (``from_config``, or
``from_pretrained`` with ``config=`` one of them, as ``model_factory.load_checkpoint_config`` gives). Nothing is
registered for ``modernbert``: a ModernBERT checkpoint saved today says ``model_type: "modernbert"``, and
transformers gives its stock classes to a native model type unless ``trust_remote_code=True`` (see
``configuration_modernpatent``), so importing this package never changes what stock code loads.

``import modernpatent_hf`` stays cheap (no torch, transformers or datasets). Registering needs transformers' Auto modules and our
modeling code (torch and the modeling stack: seconds to import), so :func:`install` registers at the moment
transformers' own Auto modules are first imported: a meta-path finder wraps the loading of
``transformers.models.auto.configuration_auto`` (``AutoConfig``) and ``...modeling_auto`` (the model Auto
classes) and registers our classes right after each has run. Modules already imported are registered at once.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import logging
import sys
from typing import Callable, Dict, List, Optional

logger = logging.getLogger(__name__)

CONFIG_AUTO_MODULE = "transformers.models.auto.configuration_auto"
MODELING_AUTO_MODULE = "transformers.models.auto.modeling_auto"


def register_configs() -> None:
    """``AutoConfig`` resolves the model types ``modernpatent`` (legacy) and ``bertpatent``."""
    from .configuration_modernpatent import BertPatentConfig, LegacyModernPatentConfig

    auto_config = sys.modules[CONFIG_AUTO_MODULE].AutoConfig
    for config_class in (LegacyModernPatentConfig, BertPatentConfig):
        auto_config.register(config_class.model_type, config_class, exist_ok=True)


def register_models() -> None:
    """``AutoModel`` gives our encoders and ``AutoModelForSequenceClassification`` our classifiers, for our configs."""
    from .configuration_modernpatent import BertPatentConfig, ModernBertPatentConfig
    from .modeling_modernpatent import (
        BertForHierarchicalPatentClassification,
        BertPatentModel,
        ModernBertForHierarchicalPatentClassification,
        ModernBertPatentModel,
    )

    auto = sys.modules[MODELING_AUTO_MODULE]
    for config_class, encoder_class, classifier_class in (
        (ModernBertPatentConfig, ModernBertPatentModel, ModernBertForHierarchicalPatentClassification),
        (BertPatentConfig, BertPatentModel, BertForHierarchicalPatentClassification),
    ):
        auto.AutoModel.register(config_class, encoder_class, exist_ok=True)
        auto.AutoModelForSequenceClassification.register(config_class, classifier_class, exist_ok=True)


# What to register once each of transformers' Auto modules has run.
REGISTRATIONS: Dict[str, Callable[[], None]] = {
    CONFIG_AUTO_MODULE: register_configs,
    MODELING_AUTO_MODULE: register_models,
}
# Modules whose loading is watched while a registration waits: registering imports modules of both packages.
WATCHED_PACKAGES = ("transformers", "modernpatent_hf")

_pending: List[str] = []  # registrations whose Auto module has run, waiting for the imports around it to end
_loading: List[str] = []  # watched modules being executed, outermost first
_registering = False


def _flush() -> None:
    """Run the pending registrations once no watched module is being executed.

    transformers loads its Auto modules from inside other modules (a config class's docstring decorator imports
    them), and our config module imports those very classes: registering in the middle would meet them half
    initialized. So a registration waits until the outermost watched import has finished.
    """
    global _registering
    if _registering:  # the imports of a registration end here too; the loop below runs the next one
        return
    _registering = True
    try:
        while _pending and not _loading:
            name = _pending.pop(0)
            try:
                REGISTRATIONS[name]()
            except Exception as error:  # never break `import transformers` for users of other models
                logger.warning(
                    "modernpatent_hf could not register its model types with transformers (%s: %s)",
                    type(error).__name__,
                    error,
                )
    finally:
        _registering = False
    if not _pending and all(name in sys.modules for name in REGISTRATIONS) and _FINDER in sys.meta_path:
        sys.meta_path.remove(_FINDER)


class _WatchingLoader(importlib.abc.Loader):
    """A watched module's loader: keeps :data:`_loading` and queues our registration after an Auto module."""

    def __init__(self, loader: importlib.abc.Loader, module_name: str):
        self._loader = loader
        self._module_name = module_name

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        _loading.append(self._module_name)
        try:
            self._loader.exec_module(module)
        finally:
            _loading.remove(self._module_name)
        if self._module_name in REGISTRATIONS:
            _pending.append(self._module_name)
        _flush()

    def __getattr__(self, name: str):  # get_source, get_filename... for inspect and tracebacks
        return getattr(self._loader, name)


class _WatchImports(importlib.abc.MetaPathFinder):
    """Finds the submodules of :data:`WATCHED_PACKAGES` as the path finder does, with a :class:`_WatchingLoader`."""

    def find_spec(self, fullname: str, path=None, target=None) -> Optional[importlib.machinery.ModuleSpec]:
        if path is None or not fullname.startswith(tuple(f"{package}." for package in WATCHED_PACKAGES)):
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _WatchingLoader(spec.loader, fullname)
        return spec


_FINDER = _WatchImports()


def install() -> None:
    """Register with the Auto modules transformers has loaded, and with the others when it loads them."""
    _pending.extend(name for name in REGISTRATIONS if name in sys.modules and name not in _pending)
    if not all(name in sys.modules for name in REGISTRATIONS) and _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)
    _flush()
