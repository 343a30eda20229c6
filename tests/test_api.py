"""The public API, pinned (in the manner of dm-pix's `api_test.py`): the names `jaxstyle`
exports, each function's signature, each dataclass's fields and each exception's base, so that
any change to them is a deliberate edit of this file. Every module states its own public names
in `__all__`, and no public name is also a submodule's (the package would have to choose which
one `jaxstyle.NAME` is). That `import jaxstyle` does not import JAX: `test_cli_info.py`."""

import dataclasses
import importlib
import inspect
import pkgutil

import pytest

import jaxstyle

FUNCTIONS = {
    "apply_cube": "(lut: 'jax.Array', image: 'jax.Array') -> 'jax.Array'",
    "apply_look": "(look, photo) -> 'np.ndarray'",
    "content_loss": "(features: 'jax.Array', target: 'jax.Array') -> 'jax.Array'",
    "embedded_vgg16": "() -> 'VGGWeights'",
    "evaluate_files": ("(content: 'ImageInput', style: 'ImageInput', output: 'ImageInput', *, "
                       "content_mask: 'ImageInput | None' = None, style_mask: 'ImageInput | None' = None, "
                       "reference: 'ImageInput | None' = None, max_side: 'int | None' = None, "
                       "weights: 'VGGWeights | str | None' = None) -> 'dict[str, float]'"),
    "evaluate_triple": ("(weights: 'VGGWeights', content: 'jax.Array', style: 'jax.Array', output: 'jax.Array', *, "
                        "content_mask: 'jax.Array | None' = None, style_mask: 'jax.Array | None' = None, "
                        "reference: 'jax.Array | None' = None) -> 'dict[str, float]'"),
    "extract_features": ("(image: 'Any', layers: 'Sequence[str] | None' = None, *, "
                         "backbone: 'str' = 'vgg16') -> 'dict[str, Any]'"),
    "features": ("(weights: 'VGGWeights', image: 'jax.Array', "
                 "layers: 'Sequence[str]' = ('relu1_1', 'relu2_1', 'relu3_1', 'relu4_1', 'relu5_1'), *, "
                 "pooling: 'str' = 'max') -> 'dict[str, jax.Array]'"),
    "fetch_weights": ("(name: 'str', *, url: 'str | None' = None, sha256: 'str | None' = None, "
                      "progress: 'bool' = True, force: 'bool' = False) -> 'Path'"),
    "fit_cube": ("(content: 'jax.Array', target: 'jax.Array', *, size: 'int' = 33, smoothness: 'float' = 0.01, "
                 "iterations: 'int' = 100) -> 'jax.Array'"),
    "gram": "(features: 'jax.Array') -> 'jax.Array'",
    "guided_filter": ("(guide: 'jax.Array', source: 'jax.Array', *, radius: 'int' = 8, "
                      "eps: 'float | jax.Array' = 0.01) -> 'jax.Array'"),
    "import_weights": ("(path: 'str | os.PathLike[str]', *, arch: 'str | None' = None, "
                       "convention: 'str | None' = None, sha256: 'str | None' = None, "
                       "force: 'bool' = False) -> 'Path'"),
    "joint_bilateral_upsample": ("(values: 'jax.Array', guide_small: 'jax.Array', guide_full: 'jax.Array', *, "
                                 "sigma_range: 'float | jax.Array' = 0.1, support: 'int' = 2, "
                                 "tile: 'int | None' = 64) -> 'jax.Array'"),
    "laplacian_matvec": ("(content: 'jax.Array', v: 'jax.Array', *, radius: 'int' = 1, eps: 'float' = 1e-07, "
                         "form: 'str' = 'auto') -> 'jax.Array'"),
    "laplacian_residual_map": ("(content: 'jax.Array', image: 'jax.Array', *, radius: 'int' = 1, "
                               "eps: 'float' = 1e-07) -> 'jax.Array'"),
    "linear_color_transfer": ("(content: 'jax.Array', style: 'jax.Array', content_mask: 'jax.Array | None' = None, "
                              "style_mask: 'jax.Array | None' = None, *, eps: 'float' = 0.0001, "
                              "feather_radius: 'int' = 0) -> 'jax.Array'"),
    "load_config": ("(name_or_path: 'str | os.PathLike[str]' = 'default', "
                    "overrides: 'Mapping[str, Any] | None' = None) -> 'Config'"),
    "load_image": ("(path: 'PathLike', *, max_side: 'int | None' = None, alpha: 'str' = 'composite', "
                   "background: 'Sequence[float]' = (1.0, 1.0, 1.0)) -> 'np.ndarray'"),
    "load_look": "(path) -> 'tuple[np.ndarray, dict[str, Any]]'",
    "make_objective": ("(cfg: 'LossConfig', weights: 'VGGWeights', targets: 'dict[str, Any]', *, "
                       "use_photo: 'bool' = True)"),
    "masked_grams": "(features: 'jax.Array', masks: 'jax.Array') -> 'tuple[jax.Array, jax.Array]'",
    "matting_laplacian": "(content: 'jax.Array', *, radius: 'int' = 1, eps: 'float' = 1e-07) -> 'SparseLaplacian'",
    "parse_mask_pair": ("(content_mask: 'MaskInput', style_mask: 'MaskInput', *, "
                        "content_shape: 'tuple[int, int] | None' = None, "
                        "style_shape: 'tuple[int, int] | None' = None, num_labels: 'int | None' = None, "
                        "palette: 'Palette' = (('blue', (0, 0, 255)), ('green', (0, 255, 0)), ('black', (0, 0, 0)), "
                        "('white', (255, 255, 255)), ('red', (255, 0, 0)), ('yellow', (255, 255, 0)), ('grey', (128, "
                        "128, 128)), ('lightblue', (0, 255, 255)), ('purple', (255, 0, 255))), "
                        "tolerance: 'float' = 0.1, resize_tolerance: 'float' = 0.02, "
                        "min_region_pixels: 'int' = 16) -> 'MaskPair'"),
    "photorealism_loss": ("(content: 'jax.Array', image: 'jax.Array', *, radius: 'int' = 1, "
                          "eps: 'float' = 1e-07) -> 'jax.Array'"),
    "prepare_targets": ("(weights: 'VGGWeights', content: 'jax.Array', style: 'jax.Array', "
                        "content_mask: 'jax.Array | None' = None, style_mask: 'jax.Array | None' = None, *, "
                        "cfg: 'LossConfig') -> 'dict[str, Any]'"),
    "propagate_masks": ("(mask: 'jax.Array', *, arch: 'str' = 'vgg16', "
                        "layers: 'Sequence[str]' = ('relu1_1', 'relu2_1', 'relu3_1', 'relu4_1', 'relu5_1'), "
                        "count_include_pad: 'bool' = True) -> 'dict[str, jax.Array]'"),
    "read_cube": "(path) -> 'np.ndarray'",
    "read_metadata": "(path: 'PathLike') -> 'dict[str, Any]'",
    "read_photo": ("(path: 'PathLike', *, alpha: 'str' = 'composite', "
                   "background: 'Sequence[float]' = (1.0, 1.0, 1.0)) -> 'Photo'"),
    "refine_detail": ("(output: 'jax.Array', content: 'jax.Array', *, radius: 'int' = 8, "
                      "eps: 'float | jax.Array' = 0.01) -> 'jax.Array'"),
    "resolve_weights": "(backbone: 'str' = 'vgg16', *, allow_fallback: 'bool' = False) -> 'VGGWeights'",
    "save_image": ("(image: 'Any', path: 'PathLike', *, metadata: 'Mapping[str, Any] | None' = None, "
                   "overwrite: 'bool' = False, force: 'bool' = False, protect: 'Sequence[PathLike]' = (), "
                   "quality: 'int' = 95, bits: 'int' = 8, icc_profile: 'bytes | None' = None, "
                   "exif: 'bytes | None' = None) -> 'Path'"),
    "save_look": "(path, look, *, metadata: 'Mapping[str, Any]', overwrite: 'bool' = False) -> 'Path'",
    "smooth_local_affine": ("(output: 'jax.Array', content: 'jax.Array', *, radius: 'int' = 15, "
                            "edge: 'float | jax.Array' = 0.01, patch_radius: 'int' = 1, "
                            "eps: 'float | jax.Array' = 0.001) -> 'jax.Array'"),
    "style_loss": ("(features: 'jax.Array', masks: 'jax.Array', target_grams: 'jax.Array', *, "
                   "normalization: 'str' = 'none') -> 'jax.Array'"),
    "stylize": ("(content: 'Any', style: 'Any', *, content_mask: 'Any' = None, style_mask: 'Any' = None, "
                "config: 'Config | str' = 'default', overrides: 'Mapping[str, Any] | None' = None, "
                "weights: 'VGGWeights | None' = None, max_side: 'int | None' = None, "
                "max_output_side: 'int | None' = None, full_size: 'bool' = True, "
                "content_is_full_size: 'bool' = False, progress: 'ProgressFn | None' = None, "
                "log_terms: 'bool' = False, snapshot: 'SnapshotFn | None' = None, "
                "snapshot_every: 'int' = 0, start_look: 'Any' = None, start_hold: 'Any' = None) -> 'Result'"),
    "stylize_batch": ("(contents: 'Any', styles: 'Any', content_masks: 'Any' = None, style_masks: 'Any' = None, *, "
                      "config: 'Config | str' = 'default', weights: 'VGGWeights | None' = None, "
                      "mesh: 'Mesh | None' = None, strategy: 'str' = 'auto', "
                      "contents_full: 'Sequence[Any] | None' = None, "
                      "progress: 'ProgressFn | None' = None) -> 'BatchResult'"),
    "stylize_image": ("(weights: 'VGGWeights', content: 'jax.Array', style: 'jax.Array', "
                      "content_mask: 'jax.Array | None' = None, style_mask: 'jax.Array | None' = None, *, "
                      "config: 'Config', loss_weights: 'Mapping[str, jax.Array] | None' = None, "
                      "key: 'jax.Array | None' = None, content_full: 'jax.Array | None' = None, "
                      "start: 'jax.Array | None' = None, start_hold: 'jax.Array | None' = None) -> 'jax.Array'"),
    "total_variation": "(image: 'jax.Array') -> 'jax.Array'",
    "upsample_affine": ("(content_full: 'jax.Array', content_small: 'jax.Array', result_small: 'jax.Array', *, "
                        "radius: 'int' = 1, eps: 'float | jax.Array' = 1e-05, "
                        "sigma_range: 'float | jax.Array' = 0.1, fit_sigma_range: 'float | jax.Array' = 0.5, "
                        "support: 'int' = 2, tile: 'int | None' = 64) -> 'jax.Array'"),
    "write_cube": ("(path, lut, *, title: 'str | None' = None, comments: 'tuple[str, ...]' = (), "
                   "overwrite: 'bool' = False) -> 'Path'"),
}

# The dataclasses: their fields in order.
CLASSES = {
    "BatchResult": ("images", "history", "best_loss", "steps", "status", "failed", "notes", "seconds", "config",
                    "strategy"),
    "Config": ("name", "backbone", "allow_fallback", "mode", "max_side", "max_output_side", "buckets", "coarse_scale",
               "seed", "init", "init_noise", "init_feather", "stage2_start", "start_recolor", "loss", "stage1",
               "stage2", "smooth", "upsample", "grid"),
    "LossConfig": ("content_weight", "style_weight", "tv_weight", "photo_weight", "content_layers", "style_layers",
                   "pooling", "laplacian_radius", "laplacian_eps", "laplacian_form", "style_normalization",
                   "mask_feather", "region_photo_scale"),
    "MaskPair": ("content", "style", "labels", "notes"),
    "OptimConfig": ("method", "iterations", "memory_size", "linesearch", "lbfgs_step", "max_linesearch_steps",
                    "learning_rate", "adam_eps", "tol", "blowup", "chunk_size", "loop"),
    "Photo": ("pixels", "icc_profile", "exif", "bits", "transparent"),
    "Result": ("image", "stages", "history", "terms", "status", "seconds", "notes", "config", "working_size", "look"),
    "VGGWeights": ("params", "arch", "convention", "source"),
}

# The exceptions: each one's base class.
ERRORS = {
    "DivergenceError": "JaxstyleError",
    "Interrupted": "JaxstyleError",
    "JaxstyleError": "ValueError",
    "WeightsError": "JaxstyleError",
}

CONSTANTS = {
    "CONTENT_LAYERS": ("relu4_2",),
    "STYLE_LAYERS": ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"),
}


def test_the_public_names_are_exactly_these():
    pinned = {"__version__", *FUNCTIONS, *CLASSES, *ERRORS, *CONSTANTS}
    assert set(jaxstyle.__all__) == pinned
    assert len(jaxstyle.__all__) == len(pinned)


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_function_signature(name):
    function = getattr(jaxstyle, name)
    assert callable(function) and not inspect.isclass(function)
    assert str(inspect.signature(function)) == FUNCTIONS[name]


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_dataclass_fields(name):
    cls = getattr(jaxstyle, name)
    assert tuple(field.name for field in dataclasses.fields(cls)) == CLASSES[name]
    assert tuple(inspect.signature(cls).parameters) == CLASSES[name]  # constructed from these alone


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_exception_base(name):
    assert [base.__name__ for base in getattr(jaxstyle, name).__bases__] == [ERRORS[name]]


def test_constants():
    assert {name: getattr(jaxstyle, name) for name in CONSTANTS} == CONSTANTS


def modules() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(jaxstyle.__path__) if not m.name.startswith("_"))


def test_no_public_name_is_also_a_submodule():
    assert set(jaxstyle.__all__) & set(modules()) == set()


@pytest.mark.parametrize("module", modules())
def test_every_module_states_its_public_names(module):
    mod = importlib.import_module(f"jaxstyle.{module}")
    assert isinstance(mod.__all__, list) and len(set(mod.__all__)) == len(mod.__all__)
    assert [name for name in mod.__all__ if not hasattr(mod, name)] == []


@pytest.mark.parametrize("name", sorted({*FUNCTIONS, *CLASSES, *ERRORS}))
def test_the_package_exports_public_names_of_its_modules(name):
    value = getattr(jaxstyle, name)
    assert name in importlib.import_module(value.__module__).__all__
