"""Masked-pixel inputs cannot leak the noisy value; with them the real network cannot learn the identity."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_clipdenoise.adaptation.loop import masked_loss, masked_predictions, predict, trainable_network
from napari_clipdenoise.adaptation.masking import cell_size, draw_mask
from napari_clipdenoise.adaptation.sampling import AXIS_PRESERVING_MODES, CropSampler, TrainingData
from napari_clipdenoise.adaptation.settings import AdaptSettings
from napari_clipdenoise.inference.options import OptionError


def test_one_centre_per_grid_cell_and_replacements_come_from_visible_pixels():
    rng = np.random.default_rng(0)
    plan = draw_mask(3, 40, 36, rng, fraction=0.02, neighbourhood=5)
    cell = cell_size(0.02)
    crop, y, x = plan.centres
    cells = set(zip(crop.tolist(), (y // cell).tolist(), (x // cell).tolist(), strict=True))
    assert len(cells) == len(crop) == 3 * (-(-40 // cell)) * (-(-36 // cell))
    hidden = plan.hidden_map()
    assert not hidden[plan.crop, plan.source_y, plan.source_x].any(), "a replacement came from a hidden pixel"
    centre = plan.centre
    assert np.all(np.abs(plan.source_y[centre] - plan.y[centre]) <= 2)
    assert np.all(np.abs(plan.source_x[centre] - plan.x[centre]) <= 2)
    assert not np.any((plan.source_y == plan.y) & (plan.source_x == plan.x))


def test_a_structured_mask_hides_the_line_along_its_axis():
    rng = np.random.default_rng(1)
    plan = draw_mask(2, 48, 48, rng, fraction=0.01, structured_axis="X", structured_length=7)
    hidden = plan.hidden_map()
    for n, y, x in zip(*plan.centres, strict=True):
        assert hidden[n, y, max(0, x - 3) : x + 4].all()
        # the centre's replacement is not on its (correlated) row segment
    centre = plan.centre
    same_row = plan.source_y[centre] == plan.y[centre]
    assert np.all(np.abs(plan.source_x[centre][same_row] - plan.x[centre][same_row]) > 3)
    assert not hidden[plan.crop, plan.source_y, plan.source_x].any()


def test_the_masked_input_holds_no_hidden_value_anywhere():
    rng = np.random.default_rng(2)
    crops = rng.random((4, 3, 32, 32)).astype(np.float32)
    plan = draw_mask(4, 32, 32, np.random.default_rng(5), fraction=0.05, structured_axis="Y", structured_length=5)
    changed = crops.copy()
    changed[plan.crop, :, plan.y, plan.x] += 1000.0  # every hidden value (centres and their lines)
    np.testing.assert_array_equal(plan.apply(crops), plan.apply(changed))
    np.testing.assert_array_equal(
        plan.apply(torch.from_numpy(crops)).numpy(), plan.apply(torch.from_numpy(changed)).numpy()
    )
    assert not np.array_equal(crops, changed)  # apply() left its input alone and the change was real


@pytest.mark.parametrize("channels", [1, 3])
def test_the_network_prediction_at_a_hidden_pixel_ignores_its_value_through_every_path(
    channels, gray_model, rgb_model, one_torch_thread
):
    """f0 (the raw-image skip), the encoder and the 1-channel ``first`` conv all see the masked crops only."""
    base = gray_model if channels == 1 else rgb_model
    network = trainable_network(base.network, AdaptSettings(steps=1)).eval()
    rng = np.random.default_rng(3)
    crops = torch.from_numpy(rng.random((2, channels, 32, 32)).astype(np.float32))
    plan = draw_mask(2, 32, 32, rng, fraction=0.03)
    changed = crops.clone()
    index = [torch.as_tensor(a) for a in plan.centres]
    changed[index[0], :, index[1], index[2]] = torch.rand(len(index[0]), channels) * 5
    with torch.no_grad():
        predicted, noisy = masked_predictions(network, crops, plan, replicate=False)
        predicted_changed, noisy_changed = masked_predictions(network, changed, plan, replicate=False)
        # control: the same change is visible to the network when nothing is masked
        plain = predict(network, crops, False)[index[0], :, index[1], index[2]]
        plain_changed = predict(network, changed, False)[index[0], :, index[1], index[2]]
    torch.testing.assert_close(predicted, predicted_changed, rtol=0, atol=0)
    assert not torch.equal(noisy, noisy_changed)
    assert (plain - plain_changed).abs().max() > 1e-3


def test_grayscale_for_an_rgb_model_is_masked_in_all_three_copies(rgb_model, one_torch_thread):
    network = trainable_network(rgb_model.network, AdaptSettings(steps=1)).eval()
    rng = np.random.default_rng(4)
    crops = torch.from_numpy(rng.random((2, 1, 32, 32)).astype(np.float32))
    plan = draw_mask(2, 32, 32, rng, fraction=0.03)
    changed = crops.clone()
    index = [torch.as_tensor(a) for a in plan.centres]
    changed[index[0], :, index[1], index[2]] += 3.0
    with torch.no_grad():
        a, _ = masked_predictions(network, crops, plan, replicate=True)
        b, _ = masked_predictions(network, changed, plan, replicate=True)
    assert a.shape[1] == 1  # the three outputs are averaged back to one channel, as denoise does
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def _train_on_pure_noise(base, *, masked: bool, steps: int = 30):
    """Fit the real network to zero-mean white noise: only the input's own value could predict a pixel.

    Both runs are alike (same network, crops, loss pixels, optimiser, seed) except that the
    masked one hides those pixels from the input. Zero-mean noise spares both the steps that
    learning the mean would take; 16 px crops keep it to about a second each.
    """
    network = trainable_network(base, AdaptSettings(steps=1, decoder_stages=1)).train()
    optimizer = torch.optim.Adam([p for p in network.parameters() if p.requires_grad], lr=3e-3)
    rng = np.random.default_rng(0)
    for _ in range(steps):
        crops = torch.from_numpy((0.3 * rng.standard_normal((8, 1, 16, 16))).astype(np.float32))
        plan = draw_mask(8, 16, 16, rng, fraction=0.0625)
        if masked:
            loss = masked_loss(network, crops, plan, False)
        else:  # the same pixels, but the input keeps their values
            index = [torch.as_tensor(a) for a in plan.centres]
            output = predict(network, crops, False)[index[0], :, index[1], index[2]]
            loss = torch.mean((output - crops[index[0], :, index[1], index[2]]) ** 2)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return network.eval()


def _fresh_noise_scores(network):
    rng = np.random.default_rng(99)
    crops = torch.from_numpy((0.3 * rng.standard_normal((32, 1, 16, 16))).astype(np.float32))
    plan = draw_mask(32, 16, 16, rng, fraction=0.0625)
    index = [torch.as_tensor(a) for a in plan.centres]
    with torch.no_grad():
        hidden_prediction, noisy = masked_predictions(network, crops, plan, False)
        seen_prediction = predict(network, crops, False)[index[0], :, index[1], index[2]]
    power = float(torch.mean(noisy**2))
    masked_error = float(torch.mean((hidden_prediction - noisy) ** 2)) / power
    seen_error = float(torch.mean((seen_prediction - noisy) ** 2)) / power
    correlation = float(np.corrcoef(hidden_prediction.flatten().numpy(), noisy.flatten().numpy())[0, 1])
    return masked_error, seen_error, correlation


@pytest.mark.slow
def test_an_unmasked_loss_learns_the_identity_and_the_masked_one_cannot(gray_model, one_torch_thread):
    base = gray_model.network
    _, identity_error, _ = _fresh_noise_scores(_train_on_pure_noise(base, masked=False))
    masked_error, _, correlation = _fresh_noise_scores(_train_on_pure_noise(base, masked=True))
    # unmasked: the network copies its input (f0 skip) and predicts pure noise far better than chance
    assert identity_error < 0.5
    # masked: no predictor that does not see a value beats the noise power at it
    assert masked_error > 0.9
    assert abs(correlation) < 0.2


def test_structured_masks_only_use_flips_and_half_turns():
    planes = [np.arange(64 * 64, dtype=np.float32).reshape(1, 64, 64)]
    sampler = CropSampler(TrainingData(planes, False), 32, validation_fraction=0.0, max_validation=1, seed=0)
    rng = np.random.default_rng(0)
    for _ in range(20):
        crop = sampler.training_batch(rng, 1, keep_axes=True)[0, 0]
        assert abs(crop[0, 1] - crop[0, 0]) == 1  # neighbours along X stay neighbours along X
    assert set(AXIS_PRESERVING_MODES) == {0, 1, 4, 5}


def test_training_crops_never_overlap_held_out_tiles():
    unique = np.random.default_rng(0).permutation(2 * 128 * 96).astype(np.float32)  # exact, distinct values
    planes = [unique[: 128 * 96].reshape(1, 128, 96), unique[128 * 96 :].reshape(1, 128, 96)]
    sampler = CropSampler(TrainingData(planes, False), 32, validation_fraction=0.25, max_validation=8, seed=3)
    assert len(sampler.validation_tiles) == 6
    held = {(t.plane, t.top, t.left) for t in sampler.validation_tiles}
    rng = np.random.default_rng(1)
    values = {plane: {} for plane in range(2)}
    for tile in sampler.validation_tiles:
        values[tile.plane][(tile.top, tile.left)] = planes[tile.plane][
            0, tile.top : tile.top + 32, tile.left : tile.left + 32
        ]
    for _ in range(30):
        batch = sampler.training_batch(rng, 4)
        for crop in batch[:, 0]:
            for tiles in values.values():
                for block in tiles.values():
                    # no pixel of a held-out tile appears in a training crop (every value is distinct)
                    assert not np.isin(crop, block).any()
    assert len(held) == 6


@pytest.mark.parametrize(
    ("field", "value"),
    [("crop_size", 40), ("crop_size", 16), ("mask_fraction", 0.0), ("decoder_stages", 6), ("steps", 0),
     ("neighbourhood", 4), ("structured_axis", "Z"), ("validation_fraction", 0.8), ("precision", "fp16")],
)  # fmt: skip
def test_bad_settings_name_the_field(field, value):
    with pytest.raises(OptionError) as info:
        AdaptSettings(**{field: value})
    assert info.value.option == field


def test_the_budget_is_five_minutes_unless_steps_are_given():
    assert AdaptSettings().max_minutes == 5.0
    assert AdaptSettings(steps=100).max_minutes is None  # a step budget alone is reproducible
    assert AdaptSettings(steps=100, max_minutes=2).max_minutes == 2.0
