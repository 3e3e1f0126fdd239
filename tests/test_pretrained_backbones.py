"""Pretrained backbones by Hub id or local folder, attention implementation and dtype per backbone, peft adapters."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from peft import LoraConfig
from transformers import (
    AutoModel,
    BertTokenizerFast,
    ResNetConfig,
    ViTImageProcessorPil,
    WavLMConfig,
)

from mla_hf import MLAConfig, MLAModel
from mla_hf.presets import build_model_and_processor

from conftest import WIDTH, run_without_mla_hf, tiny_bert, tiny_vit
from hub_cache import publish


VIT_ID, BERT_ID = "google/vit-base-patch16-224", "google-bert/bert-base-uncased"


def tiny_wavlm():
    return WavLMConfig(**WIDTH, conv_dim=(8, 8), conv_kernel=(4, 4), conv_stride=(2, 2), num_conv_pos_embeddings=4,
                       num_conv_pos_embedding_groups=2)


def tiny_tokenizer(folder):
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "red", "apple", "green", "pear"]
    path = os.path.join(folder, "vocab.txt")
    os.makedirs(folder, exist_ok=True)
    with open(path, "w") as handle:
        handle.write("\n".join(vocab))
    return BertTokenizerFast(vocab=path)


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """A Hub cache holding a tiny ViT (with its image processor) and BERT (with its tokenizer) under real ids; the
    ViT also has a 'v2' branch with other weights."""
    root = tmp_path_factory.mktemp("hub")
    torch.manual_seed(0)
    vit, bert = AutoModel.from_config(tiny_vit()), AutoModel.from_config(tiny_bert())
    processor = ViTImageProcessorPil(size={"height": 16, "width": 16})
    publish(root, VIT_ID, vit, processor)
    publish(root, BERT_ID, bert, tiny_tokenizer(str(root / "vocab")))
    vit_v2 = AutoModel.from_config(tiny_vit())
    publish(root, VIT_ID, vit_v2, processor, revision="v2")
    return {"root": str(root), "vit": vit, "vit_v2": vit_v2, "bert": bert}


def offline(hub):
    return {"cache_dir": hub["root"], "local_files_only": True}


def same_weights(module, reference) -> bool:
    return all(torch.equal(a, b) for a, b in zip(module.state_dict().values(), reference.state_dict().values()))


def test_backbones_by_hub_id_load_their_weights_and_save_no_id(hub, tmp_path):
    config = MLAConfig(modalities={"image": VIT_ID, "text": BERT_ID}, num_labels=3, projection_dim=8, **offline(hub))
    model = MLAModel(config)
    assert same_weights(model.encoders["image"], hub["vit"]) and same_weights(model.encoders["text"], hub["bert"])
    model.save_pretrained(tmp_path)
    saved = (tmp_path / "config.json").read_text()
    assert VIT_ID not in saved and BERT_ID not in saved and hub["root"] not in saved
    reloaded = MLAModel.from_pretrained(tmp_path)
    assert same_weights(reloaded.encoders["image"], hub["vit"])


def test_revision_per_modality(hub):
    config = MLAConfig(modalities={"image": VIT_ID, "text": BERT_ID}, num_labels=2, revision={"image": "v2"},
                       **offline(hub))
    model = MLAModel(config)
    assert same_weights(model.encoders["image"], hub["vit_v2"]) and not same_weights(model.encoders["image"], hub["vit"])
    assert same_weights(model.encoders["text"], hub["bert"])


def test_processor_components_come_from_the_same_repo(hub):
    config, processor = build_model_and_processor({"image": "image", "text": "text"}, ["a", "b"],
                                                  pretrained={"image": VIT_ID, "text": BERT_ID},
                                                  hub_options=offline(hub), projection_dim=8)
    assert type(processor.components["image"]).__name__ == "ViTImageProcessorPil"
    assert processor.components["text"].convert_tokens_to_ids("apple") == 7
    batch = processor([{"image": torch.zeros(3, 20, 20).numpy().transpose(1, 2, 0), "text": "a red apple"}])
    assert MLAModel(config)(**batch).logits.shape == (1, 2)


def test_an_unknown_id_names_it_and_says_what_to_do(hub):
    with pytest.raises(OSError, match=r"'image', 'nobody/no-such-model', is neither a local folder .*HF_HUB_OFFLINE"):
        MLAConfig(modalities={"image": "nobody/no-such-model"}, num_labels=2, **offline(hub))


def test_hub_ids_resolve_offline_through_the_environment(hub, tmp_path):
    """What a user does: HF_HUB_CACHE and HF_HUB_OFFLINE set, plain ids, no extra argument."""
    script = textwrap.dedent(f"""
        from mla_hf import MLAConfig, MLAModel
        model = MLAModel(MLAConfig(modalities={{"image": "{VIT_ID}"}}, num_labels=2))
        print("loaded", type(model.encoders["image"]).__name__)
        try:
            MLAConfig(modalities={{"image": "nobody/no-such-model"}}, num_labels=2)
        except OSError as error:
            print("refused", "nobody/no-such-model" in str(error))
    """)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": hub["root"], "HF_HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "loaded ViTModel" in result.stdout and "refused True" in result.stdout


# --- attention implementation and dtype ---


def image_text_inputs(batch_size=3):
    generator = torch.Generator().manual_seed(0)
    return {"image_pixel_values": torch.randn(batch_size, 3, 16, 16, generator=generator),
            "text_input_ids": torch.randint(0, 60, (batch_size, 7), generator=generator)}


def attention_of(model) -> dict:
    return {name: encoder.config._attn_implementation for name, encoder in model.encoders.items()}


def test_eager_and_sdpa_give_the_same_logits_at_construction_and_on_load(tmp_path):
    torch.manual_seed(0)
    eager = MLAModel(MLAConfig(modalities={"image": tiny_vit(), "text": tiny_bert()}, num_labels=3,
                               attn_implementation="eager")).eval()
    assert attention_of(eager) == {"image": "eager", "text": "eager"}
    eager.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["attn_implementation"] == {"image": "eager", "text": "eager"}
    assert attention_of(MLAModel.from_pretrained(tmp_path)) == {"image": "eager", "text": "eager"}  # round trip
    sdpa = MLAModel.from_pretrained(tmp_path, attn_implementation="sdpa").eval()
    assert attention_of(sdpa) == {"image": "sdpa", "text": "sdpa"}
    inputs = image_text_inputs()
    torch.testing.assert_close(sdpa(**inputs).logits, eager(**inputs).logits, atol=1e-5, rtol=1e-4)
    mixed = MLAModel.from_pretrained(tmp_path, attn_implementation={"image": "sdpa"})
    assert attention_of(mixed) == {"image": "sdpa", "text": "eager"}


def test_one_implementation_skips_backbones_without_attention():
    model = MLAModel(MLAConfig(modalities={"image": tiny_vit(), "audio": ResNetConfig(num_channels=1, depths=[1],
                                                                                       hidden_sizes=[8], embedding_size=8)},
                               num_labels=2, attn_implementation="sdpa"))
    assert model.encoders["image"].config._attn_implementation == "sdpa" and model._supports_sdpa


def test_a_backbone_without_sdpa_gives_the_transformers_error():
    with pytest.raises(ValueError, match="'audio' backbone, WavLMModel, does not support .*scaled_dot_product_attention"):
        MLAModel(MLAConfig(modalities={"audio": tiny_wavlm(), "image": tiny_vit()}, num_labels=2,
                           attn_implementation="sdpa"))
    model = MLAModel(MLAConfig(modalities={"audio": tiny_wavlm(), "image": tiny_vit()}, num_labels=2,
                               attn_implementation={"audio": "eager", "image": "sdpa"}))
    assert attention_of(model) == {"audio": "eager", "image": "sdpa"}
    assert not model._supports_sdpa and MLAModel(MLAConfig(modalities={"image": tiny_vit()}, num_labels=2))._supports_sdpa
    with pytest.raises(ValueError, match="unknown modalities"):
        MLAConfig(modalities={"image": tiny_vit()}, num_labels=2, attn_implementation={"video": "eager"})


def test_dtype_reaches_every_backbone_at_construction_and_on_load(tmp_path):
    model = MLAModel(MLAConfig(modalities={"image": tiny_vit(), "text": tiny_bert()}, num_labels=3, dtype=torch.bfloat16))
    assert {parameter.dtype for parameter in model.parameters()} == {torch.bfloat16}
    assert model(**image_text_inputs()).logits.dtype == torch.float32  # fusion runs in float32
    MLAModel(MLAConfig(modalities={"image": tiny_vit(), "text": tiny_bert()}, num_labels=3)).save_pretrained(tmp_path)
    loaded = MLAModel.from_pretrained(tmp_path, dtype=torch.bfloat16)
    assert {parameter.dtype for parameter in loaded.parameters()} == {torch.bfloat16}
    assert {backbone.dtype for backbone in loaded.config.modalities.values()} == {torch.bfloat16}


# --- peft adapters ---


def lora_model(seed=0, **lora):
    torch.manual_seed(seed)
    model = MLAModel(MLAConfig(modalities={"image": tiny_vit(), "text": tiny_bert()}, num_labels=3, projection_dim=8))
    lora = {"r": 4, "target_modules": ["q_proj", "v_proj"], "init_lora_weights": False, **lora}
    return model.add_backbone_adapters({"image": LoraConfig(**lora)})


def test_adapters_freeze_the_base_and_train_projection_and_head():
    model = lora_model()
    trainable = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
    image_encoder = {name for name in trainable if name.startswith("encoders.image.")}
    assert image_encoder and all(".lora_" in name for name in image_encoder)
    assert {"projections.image.weight", "head.linear.weight"} <= trainable
    assert all(name in trainable for name, _ in model.named_parameters() if name.startswith("encoders.text."))
    with pytest.raises(ValueError, match="already have adapters"):
        model.add_backbone_adapters({"image": LoraConfig(r=2, target_modules=["q_proj"])})


def test_adapters_survive_save_and_load_and_merge_into_a_plain_folder(tmp_path):
    model = lora_model().eval()
    inputs = image_text_inputs()
    expected = model(**inputs).logits
    model.save_pretrained(tmp_path / "adapted")
    reloaded = MLAModel.from_pretrained(tmp_path / "adapted").eval()
    assert torch.equal(reloaded(**inputs).logits, expected)

    reloaded.merge_backbone_adapters()
    assert reloaded.config.backbone_adapters == {}
    assert not any(".lora_" in name or "base_layer" in name for name in reloaded.state_dict())
    torch.testing.assert_close(reloaded(**inputs).logits, expected, atol=1e-5, rtol=1e-5)
    reloaded.save_pretrained(tmp_path / "merged")
    assert "backbone_adapters" not in json.loads((tmp_path / "merged" / "config.json").read_text()) or \
        json.loads((tmp_path / "merged" / "config.json").read_text())["backbone_adapters"] == {}
    torch.save(inputs, tmp_path / "inputs.pt")
    torch.save(expected, tmp_path / "expected.pt")
    (tmp_path / "hide").mkdir()
    (tmp_path / "hide" / "peft.py").write_text("raise ImportError('hidden for this test')\n")
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(tmp_path / 'hide')!r})
        import torch
        from transformers import AutoModel
        model = AutoModel.from_pretrained({str(tmp_path / 'merged')!r}, trust_remote_code=True).eval()
        inputs, expected = torch.load({str(tmp_path / 'inputs.pt')!r}), torch.load({str(tmp_path / 'expected.pt')!r})
        torch.testing.assert_close(model(**inputs).logits, expected, atol=1e-5, rtol=1e-5)
        print("merged-ok")
    """)
    assert "merged-ok" in run_without_mla_hf(script, tmp_path)


def test_gradient_checkpointing_reaches_every_backbone_that_supports_it():
    resnet = ResNetConfig(num_channels=1, depths=[1], hidden_sizes=[8], embedding_size=8)
    model = MLAModel(MLAConfig(modalities={"image": tiny_vit(), "text": tiny_bert(), "audio": resnet}, num_labels=2))
    model.activation_checkpointing_enable()
    flags = {name: {module.gradient_checkpointing for module in encoder.modules()
                    if hasattr(module, "gradient_checkpointing")} for name, encoder in model.encoders.items()}
    assert flags == {"image": {True}, "text": {True}, "audio": set()}  # ResNet has none to turn on
    model.train()
    output = model(**image_text_inputs(), labels=torch.tensor([0, 1, 0]))
    output.loss.backward()
    assert model.encoders["image"].layers[0].attention.q_proj.weight.grad is not None


# --- backbone families, each saved under a real Hub id in a local cache ---


def families():
    from transformers import (
        ASTFeatureExtractor,
        CLIPImageProcessorPil,
        CLIPVisionConfig,
        ConvNextImageProcessorPil,
        HubertConfig,
        Wav2Vec2Config,
        Wav2Vec2FeatureExtractor,
    )

    from conftest import tiny_ast

    audio_convs = dict(conv_dim=(8, 8), conv_kernel=(4, 4), conv_stride=(2, 2), num_conv_pos_embeddings=4,
                       num_conv_pos_embedding_groups=2)
    waveform = Wav2Vec2FeatureExtractor(sampling_rate=16000)
    return {  # family -> (Hub id, kind, backbone config, component, default pooling, attention implementations)
        "vit": (VIT_ID, "image", tiny_vit(), ViTImageProcessorPil(size={"height": 16, "width": 16}), "mean",
                ["eager", "sdpa"]),
        "ast": ("MIT/ast-finetuned-audioset-10-10-0.4593", "audio", tiny_ast(),
                ASTFeatureExtractor(num_mel_bins=16, max_length=32), "mean", ["eager", "sdpa"]),
        "wav2vec2": ("facebook/wav2vec2-base", "audio", Wav2Vec2Config(**WIDTH, **audio_convs), waveform, "mean",
                     ["eager", "sdpa"]),
        "hubert": ("facebook/hubert-base-ls960", "audio", HubertConfig(**WIDTH, **audio_convs), waveform, "mean",
                   ["eager", "sdpa"]),
        "wavlm": ("microsoft/wavlm-base", "audio", tiny_wavlm(), waveform, "mean", ["eager"]),
        "bert": (BERT_ID, "text", tiny_bert(), None, "cls", ["eager", "sdpa"]),
        "clip_vision": ("openai/clip-vit-base-patch32", "image",
                        CLIPVisionConfig(**WIDTH, image_size=16, patch_size=8),
                        CLIPImageProcessorPil(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16}),
                        "mean", ["eager", "sdpa"]),
        "resnet": ("microsoft/resnet-50", "image", ResNetConfig(num_channels=3, depths=[1], hidden_sizes=[8],
                                                                 embedding_size=8),
                   ConvNextImageProcessorPil(size={"shortest_edge": 16}), "pooler", []),
    }


RAW = {"image": np.random.default_rng(0).integers(0, 255, (20, 20, 3), dtype=np.uint8),
       "audio": (0.1 * np.random.default_rng(0).standard_normal(4000)).astype(np.float32), "text": "a red apple"}


@pytest.mark.parametrize("family", list(families()))
def test_backbone_families_load_by_id_with_their_processor(family, tmp_path):
    repo_id, kind, backbone_config, component, pooling, implementations = families()[family]
    torch.manual_seed(0)
    backbone = AutoModel.from_config(backbone_config)
    publish(tmp_path / "hub", repo_id, backbone, component or tiny_tokenizer(str(tmp_path / "vocab")))
    config, processor = build_model_and_processor(
        {kind: kind, "other": "image"}, ["a", "b"], pretrained={kind: repo_id},
        hub_options={"cache_dir": str(tmp_path / "hub"), "local_files_only": True}, projection_dim=8)
    assert config.pooling[kind] == pooling
    model = MLAModel(config).eval()
    assert same_weights(model.encoders[kind], backbone)
    batch = processor([{kind: RAW[kind], "other": RAW["image"]}, {kind: RAW[kind]}])
    logits = {implementation: MLAModel.from_pretrained(
        _saved(model, tmp_path), attn_implementation={kind: implementation}).eval()(**batch).logits
        for implementation in implementations}
    assert model(**batch).logits.shape == (2, 2)
    for implementation in implementations[1:]:
        torch.testing.assert_close(logits[implementation], logits[implementations[0]], atol=1e-5, rtol=1e-4)


def _saved(model, tmp_path):
    folder = tmp_path / "saved"
    if not folder.exists():
        model.save_pretrained(folder)
    return folder
