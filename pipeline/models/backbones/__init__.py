"""Frame backbones: the registry and base class (base.py) and one module per family, each of
which registers its models on import. `create_backbone("efficientnet_lite0")` builds one by name."""
from pipeline.models.backbones import efficientnet, tiny, torchvision_cnns, yolo  # noqa: F401,E402 (they register)
from pipeline.models.backbones.base import (  # noqa: F401
                                            Backbone,
                                            BackboneError,
                                            backbone_spec,
                                            create_backbone,
                                            list_backbones,
                                            register,
                                            resolve_device,
                                            resolve_weights,
)
