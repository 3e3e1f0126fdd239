"""`pipeline("mla-classification")`: classify samples that hold any subset of a model's modalities.

Part of the flat group of modules shipped as remote code: it imports nothing from mla_hf.

    >>> from transformers import pipeline
    >>> classify = pipeline("mla-classification", model="outputs/mla-av-digits", trust_remote_code=True)
    >>> classify({"audio": "seven.wav", "image": "seven.png"})
    [{'label': '7', 'score': 0.97}]
    >>> classify([{"audio": "seven.wav"}, {"image": "three.png"}], batch_size=2, return_modality_scores=True)
"""

from torch.utils.data import DataLoader
from transformers import Pipeline
from transformers.pipelines.pt_utils import PipelineDataset, PipelineIterator

from .processing_mla import MLAProcessor


class MLAClassificationPipeline(Pipeline):
    """Multimodal classification with an `MLAModel` and its `MLAProcessor`.

    Inputs: a dict `{modality: raw input}` per sample, or a list of them. Images: a path, a PIL image or an array;
    audio: a WAV path, `{"array", "sampling_rate"}` (resampled to the model's rate when it differs) or an array
    already at that rate; text: a string (truncated to the processor's token limit). Any modality may be missing,
    but not all of them.

    Call arguments:
        top_k (`int`, defaults to 1): how many labels to return, best first.
        fusion (`str`, *optional*): `"dynamic"` (uncertainty weights) or `"fixed"`; defaults to the model's.
        return_modality_scores (`bool`, defaults to False): also return each present modality's own prediction and
            its fusion weight.

    Returns per sample: a list of `{"label", "score"}`; with `return_modality_scores`, a dict
    `{"predictions": [...], "modalities": {modality: {"label", "score", "fusion_weight"}}}`.
    """

    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = False
    _load_tokenizer = False

    def __init__(self, *args, processor: MLAProcessor | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        if processor is None:
            source = getattr(self.model, "name_or_path", None)
            if not source:
                raise ValueError("Pass processor=MLAProcessor(...) or a model loaded from a folder that holds one.")
            processor = MLAProcessor.from_pretrained(source)
        missing = [name for name in self.model.config.modality_order if name not in processor.modalities]
        if missing:
            raise ValueError(f"The processor has no component for the model's modalities {missing}.")
        self.processor = processor

    def __call__(self, inputs, **kwargs):
        if isinstance(inputs, (list, tuple)) and not inputs:
            return []  # nothing to classify (the stock __call__ would index inputs[0])
        return super().__call__(inputs, **kwargs)

    def _sanitize_parameters(self, top_k=None, fusion=None, return_modality_scores=None, **kwargs):
        if kwargs:
            raise ValueError(f"Unknown argument(s) {sorted(kwargs)} for pipeline('mla-classification'); it takes "
                             "top_k, fusion and return_modality_scores (and batch_size, num_workers).")
        forward = {} if fusion is None else {"fusion": fusion}
        postprocess = {}
        if top_k is not None:
            if not isinstance(top_k, int) or top_k < 1:
                raise ValueError(f"top_k must be a positive integer, got {top_k!r}.")
            postprocess["top_k"] = top_k
        if return_modality_scores is not None:
            postprocess["return_modality_scores"] = return_modality_scores
        return {}, forward, postprocess

    def preprocess(self, inputs) -> dict:
        """Validate and decode one sample (files are read here, in the data loader's workers)."""
        if not isinstance(inputs, dict):
            raise ValueError(f"Each input must be a dict {{modality: raw input}}, got {type(inputs).__name__}.")
        unknown = sorted(set(inputs) - set(self.processor.modalities))
        if unknown:
            raise ValueError(f"Unknown modalities {unknown}; this model takes {self.processor.modalities}.")
        present = {name: value for name, value in inputs.items() if value is not None}
        if not present:
            raise ValueError(f"An input has no modality: give at least one of {self.processor.modalities}.")
        return {"samples": [{name: self.processor.decode(name, value) for name, value in present.items()}]}

    def _forward(self, model_inputs: dict, fusion: str | None = None) -> dict:
        batch = self.processor(model_inputs["samples"], device=self.device).to(self.device)
        outputs = self.model(**batch, fusion=fusion)
        return {
            "logits": outputs.logits.float(),
            "modality_logits": outputs.modality_logits.float(),
            "modality_weights": outputs.modality_weights.float(),
            "modality_mask": outputs.modality_mask,
        }

    def postprocess(self, model_outputs: dict, top_k: int = 1, return_modality_scores: bool = False):
        id2label = self.model.config.id2label
        probabilities = model_outputs["logits"][0].softmax(-1)
        scores, indices = probabilities.topk(min(top_k, probabilities.numel()))
        predictions = [{"label": id2label[int(index)], "score": float(score)} for score, index in zip(scores, indices)]
        if not return_modality_scores:
            return predictions
        modalities = {}
        for position, name in enumerate(self.model.config.modality_order):
            if model_outputs["modality_mask"][0, position]:
                own = model_outputs["modality_logits"][0, position].softmax(-1)
                modalities[name] = {"label": id2label[int(own.argmax())], "score": float(own.max()),
                                    "fusion_weight": float(model_outputs["modality_weights"][0, position])}
        return {"predictions": predictions, "modalities": modalities}

    def save_pretrained(self, save_directory, **kwargs):
        """Save the model (with the pipeline's code, see `MLAModel.save_pretrained`) and its processor."""
        self.model.save_pretrained(save_directory, **kwargs)
        self.processor.save_pretrained(save_directory)

    def get_iterator(self, inputs, num_workers: int, batch_size: int, preprocess_params, forward_params, postprocess_params):
        # The stock collate needs identical keys in every item and pads by key name; samples with different
        # modalities are instead merged here and preprocessed together by the MLAProcessor in `_forward`.
        dataset = PipelineDataset(inputs, self.preprocess, preprocess_params)
        loader = DataLoader(dataset, num_workers=num_workers, batch_size=batch_size, collate_fn=_merge_samples)
        model_iterator = PipelineIterator(loader, self.forward, forward_params, loader_batch_size=batch_size)
        return PipelineIterator(model_iterator, self.postprocess, postprocess_params)


def _merge_samples(items: list[dict]) -> dict:
    return {"samples": [sample for item in items for sample in item["samples"]]}
