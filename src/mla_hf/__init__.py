"""mla_hf: MLA (Multimodal Learning with Alternating Unimodal Adaptation, CVPR 2024) for Hugging Face transformers."""

from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

from .configuration_mla import MLAConfig
from .modeling_mla import MLAModel, MLAModelOutput, MLAPreTrainedModel


AutoConfig.register(MLAConfig.model_type, MLAConfig)
AutoModel.register(MLAConfig, MLAModel)
AutoModelForSequenceClassification.register(MLAConfig, MLAModel)
MLAConfig.register_for_auto_class()
MLAModel.register_for_auto_class("AutoModel")

__version__ = "0.1.0"

__all__ = ["MLAConfig", "MLAModel", "MLAModelOutput", "MLAPreTrainedModel"]
