import pytest
import torch
from hypothesis import given, settings, strategies as st

from mla_hf.training import HeadGradientProjector, authors_alpha


def head_step_change(dim: int, project: bool, seed: int = 0) -> float:
    """Relative change of W r^T after one head step, r being the feature mean P was just updated with."""
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(5, dim, generator=generator, dtype=torch.float64)
    projector = HeadGradientProjector(dim)
    for _ in range(3):  # earlier modalities' means
        projector.update(torch.randn(dim, generator=generator, dtype=torch.float64), alpha=0.05)
    r = torch.randn(dim, generator=generator, dtype=torch.float64) * 3
    projector.update(r, alpha=1e-6)
    grad = torch.randn(5, dim, generator=generator, dtype=torch.float64)
    if project:
        projector.project_(grad)
    before = weight @ r
    after = (weight - 0.1 * grad) @ r
    return float((after - before).norm() / before.norm())


@pytest.mark.parametrize("dim", [48, 768])
def test_projected_step_keeps_the_head_output_on_the_previous_mean(dim):
    assert head_step_change(dim, project=True) < 1e-4
    assert head_step_change(dim, project=False) > 1e-2


def test_projection_is_float32_in_float32_out_and_reports_what_it_lets_through():
    projector = HeadGradientProjector(8)
    projector.update(torch.ones(8), alpha=0.1)
    grad = torch.randn(3, 8)
    projected = grad.clone()
    ratio = projector.project_(projected)
    assert projected.dtype == torch.float32
    torch.testing.assert_close(projected, grad @ projector.P.float())
    assert float(ratio) == pytest.approx(float(projected.norm() / grad.norm()), rel=1e-6) and ratio < 1


def test_identity_before_any_update():
    grad = torch.randn(4, 6)
    projected = grad.clone()
    assert float(HeadGradientProjector(6).project_(projected)) == pytest.approx(1.0)
    assert torch.equal(projected, grad)


def test_forgetting_keeps_p_from_collapsing_and_the_spectrum_shows_it():
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(400, 8, generator=generator, dtype=torch.float64)
    plain, forgetting = HeadGradientProjector(8), HeadGradientProjector(8, forgetting=0.05)
    for feature in features:
        plain.update(feature, alpha=0.01)
        forgetting.update(feature, alpha=0.01)
    assert plain.spectrum()["p_min_eigenvalue"] < 1e-3  # every direction seen often: the head is frozen
    assert forgetting.spectrum()["p_min_eigenvalue"] > 0.04  # (1 - f) P + f I keeps every eigenvalue >= f
    assert 1 <= forgetting.spectrum()["p_effective_rank"] <= 8
    forgetting.reset()
    assert torch.equal(forgetting.P, torch.eye(8, dtype=torch.float64))
    with pytest.raises(ValueError, match="forgetting"):
        HeadGradientProjector(8, forgetting=1.0)


def test_stays_finite_symmetric_and_psd_over_1e5_updates():
    dim = 16
    projector = HeadGradientProjector(dim)
    generator = torch.Generator().manual_seed(0)
    scales = torch.logspace(-2, 3, 100_000, dtype=torch.float64)[torch.randperm(100_000, generator=generator)]
    directions = torch.randn(100_000, dim, generator=generator, dtype=torch.float64)
    directions[::2] = directions[0]  # a direction that keeps coming back drives its eigenvalue towards 0
    features = directions / directions.norm(dim=1, keepdim=True) * scales[:, None]  # norms from 1e-2 to 1e3
    for index, feature in enumerate(features):
        projector.update(feature, alpha=authors_alpha((index % 100) / 100))
    P = projector.P
    assert torch.isfinite(P).all()
    assert torch.equal(P, P.T)
    eigenvalues = torch.linalg.eigvalsh(P)
    assert eigenvalues.min() >= -1e-12 and eigenvalues.max() <= 1 + 1e-12


@settings(max_examples=25, deadline=None)
@given(dim=st.integers(1, 40), alpha=st.floats(1e-4, 10), scale=st.floats(1e-3, 1e3), seed=st.integers(0, 2**16))
def test_update_shrinks_p_along_the_feature(dim, alpha, scale, seed):
    r = torch.randn(dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    r = r / r.norm() * scale
    projector = HeadGradientProjector(dim)
    projector.update(r, alpha)
    # Exact RLS result from P = I: P r = r * alpha / (alpha + |r|^2).
    torch.testing.assert_close(projector.P @ r, r * alpha / (alpha + scale**2), rtol=1e-9, atol=1e-12)


def test_frobenius_normalisation_option():
    projector = HeadGradientProjector(32, normalize=True)
    projector.update(torch.randn(32), alpha=0.1)
    torch.testing.assert_close(torch.linalg.matrix_norm(projector.P), torch.tensor(1.0, dtype=torch.float64))


def test_authors_alpha_schedule_and_bad_alpha():
    assert authors_alpha(0.0) == pytest.approx(0.1)
    assert authors_alpha(0.5) == pytest.approx(0.1**1.5)
    with pytest.raises(ValueError, match="alpha must be positive"):
        HeadGradientProjector(4).update(torch.ones(4), alpha=0.0)
    with pytest.raises(ValueError, match="shape"):
        HeadGradientProjector(4).load_state_dict({"P": torch.eye(5)})
