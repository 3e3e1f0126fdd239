"""mla_hf: MLA (Multimodal Learning with Alternating Unimodal Adaptation, CVPR 2024) for Hugging Face transformers."""

from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification
from transformers.pipelines import PIPELINE_REGISTRY

from .configuration_mla import MLAConfig
from .modeling_mla import PIPELINE_TASK, MLAModel, MLAModelOutput, MLAPreTrainedModel
from .pipeline_mla import MLAClassificationPipeline
from .processing_mla import MLAProcessor


AutoConfig.register(MLAConfig.model_type, MLAConfig)
AutoModel.register(MLAConfig, MLAModel)
AutoModelForSequenceClassification.register(MLAConfig, MLAModel)
MLAConfig.register_for_auto_class()
MLAModel.register_for_auto_class("AutoModel")
PIPELINE_REGISTRY.register_pipeline(PIPELINE_TASK, pipeline_class=MLAClassificationPipeline, pt_model=AutoModel,
                                    type="multimodal")

__version__ = "0.1.0"

__all__ = ["MLAClassificationPipeline", "MLAConfig", "MLAModel", "MLAModelOutput", "MLAPreTrainedModel", "MLAProcessor"]
