import torch

from mla_hf import MLAModel
from mla_hf.data import make_synthetic_dataset, tiny_audio_image_config
from mla_hf.training import HeadGradientProjector


def test_manual_alternating_steps_lower_the_loss():
    """The core pieces compose into MLA without the Trainer: one modality per step, projected head gradient."""
    torch.manual_seed(0)
    model = MLAModel(tiny_audio_image_config(hidden_size=16, projection_dim=16)).train()
    batch = make_synthetic_dataset(num_samples=96, seed=0, noise=0.5)["train"][:32]
    inputs = {key: batch[key] for key in ("audio_input_values", "image_pixel_values")}
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    projector = HeadGradientProjector(16)

    def fused_loss():
        with torch.no_grad():
            return float(model(**inputs, labels=batch["labels"]).loss)

    before = fused_loss()
    for _ in range(15):
        for name in model.modalities:
            output = model(**inputs, modality=name, labels=batch["labels"])
            output.loss.backward()
            projector.project_(model.head.linear.weight.grad)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            projector.update(output.modality_features[:, model.modalities.index(name)].mean(0), alpha=0.1)
    assert fused_loss() < 0.7 * before
