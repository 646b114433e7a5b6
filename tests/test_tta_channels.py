"""Test-time augmentation and channel selection in the core (issue 14): InferenceOptions(tta=..., channels=...)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_clipdenoise import denoise, plan_denoise
from napari_clipdenoise.inference.options import InferenceOptions, OptionError

TILED = dict(tile_size=32, overlap=16, precision="fp32", device="cpu")


def _transform(image: np.ndarray, turns: int, flip: bool, axes=(0, 1)) -> np.ndarray:
    flipped = np.flip(image, axis=axes[1]) if flip else image
    return np.rot90(flipped, turns, axes=axes)


def _untransform(image: np.ndarray, turns: int, flip: bool, axes=(0, 1)) -> np.ndarray:
    back = np.rot90(image, -turns, axes=axes)
    return np.flip(back, axis=axes[1]) if flip else back


def _eight_runs(image, model, **options):
    runs = []
    for turns in range(4):
        for flip in (False, True):
            transformed = np.ascontiguousarray(_transform(image, turns, flip))
            runs.append(_untransform(denoise(transformed, model, output_dtype="float32", **options), turns, flip))
    return np.mean(np.stack(runs), axis=0, dtype=np.float64)


@pytest.mark.parametrize(
    ("shape", "model_name"),
    [((24, 40), "gray_model"), ((24, 40, 3), "rgb_model"), ((24, 40), "rgb_model")],
    ids=["grey-model", "rgb-model", "grey-image-rgb-model"],
)
def test_tta_equals_the_average_of_the_eight_transformed_runs(shape, model_name, request, one_torch_thread):
    """Each flip/rotation is tiled as a normal run of the transformed image would be (24 x 40: 1 x 2 tiles, turned: 2 x 1)."""
    model = request.getfixturevalue(model_name)
    image = np.random.default_rng(14).random(shape).astype(np.float32)
    options = dict(TILED, intensity_range=(0.0, 1.0))
    averaged = denoise(image, model, tta=True, output_dtype="float32", **options)
    expected = _eight_runs(image, model, **options)
    assert averaged.shape == image.shape and averaged.dtype == np.float32
    np.testing.assert_allclose(averaged, expected, rtol=0, atol=2e-6)
    single = denoise(image, model, output_dtype="float32", **options)
    assert np.abs(averaged - single).max() > 1e-4  # the augmentation changes the result


def test_tta_keeps_shape_and_dtype_and_counts_every_tile(gray_model, rgb_model, one_torch_thread):
    stack = np.random.default_rng(1).integers(0, 60000, (2, 24, 40), dtype=np.uint16)
    calls = []
    out = denoise(stack, gray_model, axes="ZYX", tta=True, progress=lambda d, t: calls.append((d, t)), **TILED)
    assert out.shape == stack.shape and out.dtype == np.uint16
    plan = plan_denoise(stack, gray_model, axes="ZYX", tta=True, **TILED)
    # 4 orientations of 24 x 40 (1 x 2 tiles) and 4 of 40 x 24 (2 x 1 tiles), for each of 2 planes
    assert plan.total_tiles == 2 * (4 * len(plan.tiles) + 4 * len(plan.rotated_tiles)) == calls[-1][1] == calls[-1][0]
    rgba = np.random.default_rng(2).integers(0, 255, (24, 40, 4), dtype=np.uint8)
    result = denoise(rgba, rgb_model, tta=True, **TILED)
    assert result.shape == rgba.shape and result.dtype == np.uint8
    np.testing.assert_array_equal(result[..., 3], rgba[..., 3])  # alpha still copied


def test_tta_option_is_checked_and_the_dask_engine_says_it_cannot(tmp_path, gray_checkpoint):
    with pytest.raises(OptionError, match="tta must be True or False"):
        InferenceOptions(tta="yes")
    assert InferenceOptions(tta=True).as_record()["tta"] is True  # all a widget needs to pass on
    pytest.importorskip("distributed")
    import zarr

    from napari_clipdenoise.distributed import denoise_zarr

    zarr.create_array(tmp_path / "v.zarr", data=np.ones((1, 16, 16), np.uint16), chunks=(1, 16, 16))
    with pytest.raises(ValueError, match="not available in the dask block engine"):
        denoise_zarr(str(tmp_path / "v.zarr"), str(tmp_path / "o.zarr"), str(gray_checkpoint), tta=True)
    assert not (tmp_path / "o.zarr").exists()


def test_selected_channels_are_denoised_and_the_others_copied(gray_model, one_torch_thread):
    image = np.random.default_rng(3).integers(0, 4000, (3, 32, 40), dtype=np.uint16)
    result = denoise(image, gray_model, axes="CYX", channels=(1,), tile_size=None, precision="fp32")
    np.testing.assert_array_equal(result[[0, 2]], image[[0, 2]])
    assert not np.array_equal(result[1], image[1])
    whole = denoise(image, gray_model, axes="CYX", tile_size=None, precision="fp32")
    np.testing.assert_array_equal(result[1], whole[1])  # same result as when every channel is denoised
    with pytest.raises(OptionError, match=r"channels names channel\(s\) 5 but the image has 3"):
        plan_denoise(image, gray_model, axes="CYX", channels=(0, 5))
    with pytest.raises(OptionError, match="distinct channel indices"):
        InferenceOptions(channels=(1, 1))
