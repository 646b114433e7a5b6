"""The models this project knows by name: what each is for, where its weights come from, its input scale.

Plain data, importable without torch; the registry (loading, installing) and the
model-source parser both read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

AUTHORS_RELEASE = "https://drive.google.com/drive/folders/1F8md2zen0iPlhGnI5-VdjdBOLY8DBIiF"
REFERENCE_REPOSITORY = "https://github.com/alwaysuu/CLIPDenoising"
#: The IDF peer model's authors' repository (Apache License 2.0); its weights are Lightning ``.ckpt`` files.
IDF_REPOSITORY = "https://github.com/dongjinkim9/IDF"
IDF_CITATION = (
    "Kim, Ko, Ali, Kim: Iterative Dynamic Filtering Networks for Generalizable Image Denoising, ICCV 2025,"
    " arXiv 2508.19649"
)
_IDF_WEIGHTS = f"{IDF_REPOSITORY}/raw/main/pretrained_models"


@dataclass(frozen=True)
class InputScale:
    """The intensity convention a model was trained on: values ``low``..``high`` in ``unit`` map to [0, 1]."""

    unit: str  # "8-bit" for photographs on 0..255, "HU" for CT in Hounsfield units
    low: float
    high: float
    description: str

    def as_record(self) -> dict:
        return {"unit": self.unit, "low": self.low, "high": self.high, "description": self.description}

    @classmethod
    def from_record(cls, record) -> InputScale | None:
        """The scale a metadata record describes (``as_record``'s output), or None if it is not one."""
        if not isinstance(record, dict):
            return None
        try:
            low, high = float(record["low"]), float(record["high"])
            unit = str(record["unit"])
        except (KeyError, TypeError, ValueError):
            return None
        if not low < high:
            return None
        return cls(unit, low, high, str(record.get("description") or f"{unit} [{low:g}, {high:g}] -> [0, 1]"))

    def describe(self) -> str:
        """One line for the command line and the widget, e.g. ``HU [-1024, 3072] -> [0, 1]``."""
        return f"{self.unit} [{self.low:g}, {self.high:g}] -> [0, 1] ({self.description})"


PHOTO_SCALE = InputScale("8-bit", 0.0, 255.0, "8-bit sRGB photographs, 0..255 -> [0, 1]")
CT_SCALE = InputScale("HU", -1024.0, 3072.0, "CT in Hounsfield units, window [-1024, 3072] -> [0, 1]")
#: Scales by the names ``models import --input-scale`` takes.
NAMED_SCALES = {"8-bit": PHOTO_SCALE, "HU": CT_SCALE}


def scale_for(metadata: dict, name: str | None) -> InputScale | None:
    """A model's input scale: from its metadata, else from the registry entry of its name, else None (unknown)."""
    scale = InputScale.from_record(metadata.get("input_scale"))
    if scale is not None:
        return scale
    entry = REGISTRY.get(name) if name else None
    return entry.input_scale if entry is not None else None


@dataclass(frozen=True)
class RegistryEntry:
    """A model the project knows by name: what it is for, where its weights come from."""

    name: str
    description: str
    noise: str
    in_channels: int
    source: str
    release_file: str
    url: str | None = None  # a direct download link, when the publisher offers one
    sha256: str | None = None
    family: str = "clip"  # the network: "clip" (CLIPDenoiser) or "idf"
    input_scale: InputScale = PHOTO_SCALE


REGISTRY: dict[str, RegistryEntry] = {
    entry.name: entry
    for entry in (
        RegistryEntry(
            "gaussian15",
            "RGB/grayscale photographs and micrographs; the paper's synthetic-noise model. Trained on Gaussian"
            " noise sigma 15/255 only; generalizes to other Gaussian levels, spatially correlated and Poisson noise.",
            noise="gaussian sigma 15/255 (CBSD432)",
            in_channels=3,
            source=AUTHORS_RELEASE,
            release_file="the synthetic-noise model (net_g_*.pth) in the authors' release folder",
        ),
        RegistryEntry(
            "srgb",
            "Real camera noise in 8-bit sRGB photographs (phones, DSLRs).",
            noise="synthetic camera-pipeline Poisson-Gaussian noise (DIV2K, CBDNet-style ISP)",
            in_channels=3,
            source=AUTHORS_RELEASE,
            release_file="the sRGB model (net_g_*.pth) in the authors' release folder",
        ),
        RegistryEntry(
            "ldct",
            "Low-dose CT slices (1 channel), intensities normalised as (HU + 1024) / 4096.",
            noise="gaussian sigma 5/255 on normal-dose Mayo-2016 slices",
            in_channels=1,
            source=AUTHORS_RELEASE,
            release_file="the CT model (net_g_*.pth) in the authors' release folder",
            input_scale=CT_SCALE,
        ),
        RegistryEntry(
            "idf",
            "The IDF peer model (ICCV 2025), bundled with this package: RGB/grayscale photographs and"
            " micrographs. Trained on Gaussian noise sigma 15/255 only, like gaussian15; works offline.",
            noise="gaussian sigma 15/255 (the authors' idf_g_15)",
            in_channels=3,
            source=IDF_REPOSITORY,
            release_file="pretrained_models/idf_g_15.ckpt (bundled: nothing to download)",
            url=f"{_IDF_WEIGHTS}/idf_g_15.ckpt",
            sha256="a40ac99b1410dd99facbed0720de5cdbb2f2edbbf8a960bee05d4536e0f89408",
            family="idf",
        ),
        RegistryEntry(
            "idf_g_15_50",
            "The IDF peer model trained on Gaussian noise of sigma 15-50/255 (RGB).",
            noise="gaussian sigma 15-50/255 (the authors' idf_g_15_50)",
            in_channels=3,
            source=IDF_REPOSITORY,
            release_file="pretrained_models/idf_g_15_50.ckpt in the authors' repository",
            url=f"{_IDF_WEIGHTS}/idf_g_15_50.ckpt",
            sha256="f5953d2fdd0ddd94d9ba421ccc3ec28500f7c592b4a67722e2416209f50a8387",
            family="idf",
        ),
        RegistryEntry(
            "idf_gp",
            "The IDF peer model trained on Gaussian (sigma 15-50/255) plus Poisson noise (RGB).",
            noise="gaussian sigma 15-50/255 and Poisson (the authors' idf_gp)",
            in_channels=3,
            source=IDF_REPOSITORY,
            release_file="pretrained_models/idf_gp.ckpt in the authors' repository",
            url=f"{_IDF_WEIGHTS}/idf_gp.ckpt",
            sha256="136d8eae84c51563e42ff40c3ff2b986bc037416f388c90b8ca34b85b084c968",
            family="idf",
        ),
    )
}


@dataclass(frozen=True)
class BundledModel:
    """A model shipped inside the package (it loads offline, without installing)."""

    name: str
    path: Path
    description: str


#: Models shipped inside the package, by name (see model/bundled/README.md for origin, licence, citation).
BUNDLED: dict[str, BundledModel] = {
    "idf": BundledModel(
        "idf",
        Path(__file__).with_name("bundled") / "idf_g_15.safetensors",
        f"the authors' idf_g_15 weights, Apache License 2.0; cite {IDF_CITATION}",
    ),
}
