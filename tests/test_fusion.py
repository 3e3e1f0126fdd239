import torch
import pytest
from hypothesis import given, settings, strategies as st

from mla_hf.fusion import energy_weights, entropy_weights, fixed_weights, fuse


@settings(max_examples=50, deadline=None)
@given(batch=st.integers(1, 8), modalities=st.integers(1, 4), labels=st.integers(2, 6), seed=st.integers(0, 2**16))
def test_entropy_weights_sum_to_one_over_present_and_zero_where_absent(batch, modalities, labels, seed):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, modalities, labels, generator=generator) * 5
    mask = torch.rand(batch, modalities, generator=generator) > 0.4
    mask[:, 0] |= ~mask.any(-1)
    weights = entropy_weights(logits, mask)
    torch.testing.assert_close(weights.sum(-1), torch.ones(batch))
    assert (weights[~mask] == 0).all()


def test_entropy_weights_favour_the_confident_modality():
    logits = torch.tensor([[[8.0, 0.0, 0.0], [0.1, 0.0, 0.0]]])
    weights = entropy_weights(logits, torch.ones(1, 2, dtype=torch.bool))
    entropy = torch.stack([-(p * p.log()).sum() for p in torch.softmax(logits[0], -1)])
    torch.testing.assert_close(weights[0], torch.softmax(-entropy, 0))
    assert weights[0, 0] > weights[0, 1]


def test_fuse_ignores_nan_logits_of_absent_modalities():
    logits = torch.tensor([[[1.0, 2.0], [float("nan"), float("nan")]]])
    mask = torch.tensor([[True, False]])
    fused = fuse(logits, entropy_weights(logits, mask), mask)
    torch.testing.assert_close(fused, torch.tensor([[1.0, 2.0]]))


def test_fixed_weights_renormalise_over_present_modalities():
    mask = torch.tensor([[True, True, True], [True, False, True]])
    weights = fixed_weights(torch.tensor([0.2, 0.3, 0.5]), mask)
    torch.testing.assert_close(weights, torch.tensor([[0.2, 0.3, 0.5], [0.2 / 0.7, 0.0, 0.5 / 0.7]]))


def test_energy_weights_are_qmf_confidences():
    logits = torch.randn(3, 2, 4)
    mask = torch.tensor([[True, True], [True, False], [False, True]])
    weights = energy_weights(logits, mask)
    torch.testing.assert_close(weights[mask], (torch.logsumexp(logits, -1) / 10)[mask])
    assert (weights[~mask] == 0).all()


def test_product_fusion_sums_log_probabilities_of_present_modalities():
    from mla_hf.fusion import fuse_modalities

    logits = torch.randn(5, 3, 4)
    mask = torch.tensor([[True, True, True], [True, False, True], [False, True, False], [True, True, False],
                         [False, False, True]])
    fused, weights = fuse_modalities("product", logits, mask)
    expected = (torch.log_softmax(logits, -1) * mask.unsqueeze(-1)).sum(1)
    torch.testing.assert_close(fused, expected)
    assert torch.equal(weights, mask.float())


def test_temperatures_divide_each_modalitys_logits_before_fusion():
    from mla_hf.fusion import fuse_modalities

    logits, mask = torch.randn(6, 2, 5), torch.ones(6, 2, dtype=torch.bool)
    temperatures = torch.tensor([2.0, 0.5])
    scaled, _ = fuse_modalities("dynamic", logits, mask)
    fused, _ = fuse_modalities("dynamic", logits * torch.tensor([0.5, 2.0]).view(1, 2, 1), mask,
                               temperatures=torch.tensor([0.5, 2.0]))
    torch.testing.assert_close(fused, scaled)
    assert not torch.allclose(fuse_modalities("dynamic", logits, mask, temperatures=temperatures)[0], scaled)


def test_fit_temperatures_recovers_a_known_miscalibration():
    from mla_hf.fusion import fit_temperatures

    generator = torch.Generator().manual_seed(0)
    calibrated = torch.randn(4000, 2, 6, generator=generator) * 2
    labels = torch.multinomial(torch.softmax(calibrated[:, 0], -1), 1, generator=generator).squeeze(1)
    # Modality 0 is calibrated, then made 3x overconfident; modality 1 is noise whatever its temperature.
    logits = torch.stack([calibrated[:, 0] * 3, calibrated[:, 1]], dim=1)
    mask = torch.ones(4000, 2, dtype=torch.bool)
    mask[:100, 1] = False
    temperatures = fit_temperatures(logits, labels, mask)
    assert temperatures[0] == pytest.approx(3.0, rel=0.1)
    assert temperatures[1] > 5  # an uninformative modality is flattened
    assert fit_temperatures(logits, labels, torch.zeros(4000, 2, dtype=torch.bool)).tolist() == [1.0, 1.0]
