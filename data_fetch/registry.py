"""The registry: which real public data sets the course can fetch, where from, and how to check them.

Each entry lists the files to download (URL, approximate size, the checksum that the distributor
publishes, if any), the licence and the citation. Where a distributor publishes no checksum, the
entry says so (``checksum=None``) and ``data_fetch`` records the SHA-256 of the first verified
download in a lock file (``<dest>/data_fetch.lock.json``); later downloads must match it.

Where every number comes from is written next to it. Sizes are approximate (used for the free-space
check only); the exact length comes from the server's ``Content-Length`` header.

Not taught in a particular week; read it before fetching real data (README, "Real data").
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

__all__ = ["Source", "DatasetEntry", "REGISTRY", "get_entry"]


@dataclass(frozen=True)
class Source:
    """One file to download.

    Shape: url, filename, approximate size in bytes, published checksum (hex) or None, algorithm
    ("md5" or "sha256"), and a sentence saying where the checksum comes from.
    """

    url: str
    filename: str
    size_bytes: int
    checksum: Optional[str]
    algorithm: str
    checksum_source: str


@dataclass(frozen=True)
class DatasetEntry:
    """One data set: its files, the course layout it is converted to, licence and citation.

    Shape: ``layout`` is "msd" (imagesTr/, labelsTr/, dataset.json, participants.tsv) or "isic"
    (images/, masks/, metadata.csv); ``folder`` is the folder name under the destination.
    """

    name: str
    title: str
    layout: str
    folder: str
    files: Tuple[Source, ...]
    licence: str
    citation: str
    homepage: str
    needs_gpu: str

    @property
    def size_bytes(self) -> int:
        """Approximate total download size in bytes (sum over the files)."""
        return sum(source.size_bytes for source in self.files)


# --- Medical Segmentation Decathlon -------------------------------------------------------------
# URLs: the AWS open-data bucket "msd-for-monai" that MONAI's DecathlonDataset downloads from
#   (monai/apps/datasets.py, class DecathlonDataset, dict ``resource``; checked in MONAI 1.6.1).
# MD5s: MONAI's DecathlonDataset, dict ``md5`` (same file); MONAI's authors downloaded every task
#   and verified these values (Project-MONAI/MONAI pull request #650, "Got MD5 of all the data and
#   verified locally"). The Decathlon itself (medicaldecathlon.com) publishes no checksum.
# Licence: medicaldecathlon.com states that all Decathlon data are shared under CC-BY-SA 4.0.
# Sizes: approximate figures of the Decathlon's own download listing (Task01 about 7.1 GB,
#   Task04 about 27 MB); not a published byte count, so used only for the free-space check.
_MSD_CITATION = (
    "Antonelli M, Reinke A, Bakas S, et al. The Medical Segmentation Decathlon. "
    "Nature Communications 13, 4128 (2022). doi:10.1038/s41467-022-30695-9. "
    "Simpson AL, Antonelli M, Bakas S, et al. A large annotated medical image dataset for the "
    "development and evaluation of segmentation algorithms. arXiv:1902.09063 (2019)."
)
_MSD_HOMEPAGE = "http://medicaldecathlon.com/"
_MONAI_MD5 = "MD5 published in MONAI's DecathlonDataset (monai/apps/datasets.py, dict md5)"

_MSD_BRAIN = DatasetEntry(
    name="msd-brain",
    title="Medical Segmentation Decathlon Task01 BrainTumour (BraTS 2016/2017: 484 training cases, "
          "4 MRI sequences)",
    layout="msd",
    folder="Task01_BrainTumour",
    files=(
        Source(url="https://msd-for-monai.s3-us-west-2.amazonaws.com/Task01_BrainTumour.tar",
               filename="Task01_BrainTumour.tar",
               size_bytes=7_100_000_000,  # approx. 7.1 GB (Decathlon download listing)
               checksum="240a19d752f0d9e9101544901065d872", algorithm="md5",
               checksum_source=_MONAI_MD5),
    ),
    licence="CC-BY-SA 4.0",
    citation=_MSD_CITATION + " BraTS: Menze BH, et al. The Multimodal Brain Tumor Image Segmentation "
             "Benchmark (BRATS). IEEE TMI 34(10):1993-2024 (2015); Bakas S, et al. Advancing The "
             "Cancer Genome Atlas glioma MRI collections with expert segmentation labels and "
             "radiomic features. Scientific Data 4, 170117 (2017).",
    homepage=_MSD_HOMEPAGE,
    needs_gpu="yes for 3D training at full size (weeks 2-4); CPU is fine for looking at cases",
)

_MSD_HIPPOCAMPUS = DatasetEntry(
    name="msd-hippocampus",
    title="Medical Segmentation Decathlon Task04 Hippocampus (small 3D MRI crops, 1 sequence, "
          "labels 1 anterior / 2 posterior)",
    layout="msd",
    folder="Task04_Hippocampus",
    files=(
        Source(url="https://msd-for-monai.s3-us-west-2.amazonaws.com/Task04_Hippocampus.tar",
               filename="Task04_Hippocampus.tar",
               size_bytes=28_000_000,  # approx. 27 MB (Decathlon download listing)
               checksum="9d24dba78a72977dbd1d2e110310f31b", algorithm="md5",
               checksum_source=_MONAI_MD5),
    ),
    licence="CC-BY-SA 4.0",
    citation=_MSD_CITATION,
    homepage=_MSD_HOMEPAGE,
    needs_gpu="no: small volumes (about 35x50x35 voxels) train on a CPU in minutes",
)

# --- ISIC 2018 Task 1 (lesion boundary segmentation) --------------------------------------------
# URLs: the ISIC challenge bucket linked from https://challenge.isic-archive.com/data/#2018
#   ("Training Data" and "Training Ground Truth" of Task 1).
# Checksums: ISIC publishes none -> checksum=None, lock file on first download. For a manual
#   cross-check only (third-party, not used by the code): constantinpape/torch-em
#   (torch_em/data/datasets/medical/isic.py) lists SHA-256
#   80f98572347a2d7a376227fa9eb2e4f7459d317cb619865b8b9910c81446675f for the training input and
#   99f8b2bb3c4d6af483362010715f7e7d5d122d9f6c02cac0e0d15bef77c7604c for the ground truth.
# Sizes: the ISIC data page lists about 10.4 GB for the training input; the ground truth zip is
#   27,402,895 bytes according to a third-party download script (about 26 MB on the ISIC page).
# Licence: CC-BY-NC 4.0 (ISIC challenge data page for 2018).
_ISIC_NO_CHECKSUM = ("ISIC publishes no checksum: the SHA-256 of the first verified download is "
                     "recorded in the lock file")

_ISIC2018 = DatasetEntry(
    name="isic2018",
    title="ISIC 2018 Task 1 lesion boundary segmentation, training set (2594 dermoscopic images "
          "with binary masks)",
    layout="isic",
    folder="ISIC2018_Task1",
    files=(
        Source(url="https://isic-challenge-data.s3.amazonaws.com/2018/"
                   "ISIC2018_Task1-2_Training_Input.zip",
               filename="ISIC2018_Task1-2_Training_Input.zip",
               size_bytes=10_400_000_000,  # approx. 10.4 GB (ISIC data page)
               checksum=None, algorithm="sha256", checksum_source=_ISIC_NO_CHECKSUM),
        Source(url="https://isic-challenge-data.s3.amazonaws.com/2018/"
                   "ISIC2018_Task1_Training_GroundTruth.zip",
               filename="ISIC2018_Task1_Training_GroundTruth.zip",
               size_bytes=27_402_895,  # third-party download script; about 26 MB on the ISIC page
               checksum=None, algorithm="sha256", checksum_source=_ISIC_NO_CHECKSUM),
    ),
    licence="CC-BY-NC 4.0 (non-commercial use)",
    citation="Codella N, Rotemberg V, Tschandl P, et al. Skin Lesion Analysis Toward Melanoma "
             "Detection 2018: A Challenge Hosted by the International Skin Imaging Collaboration "
             "(ISIC). arXiv:1902.03368 (2019). Tschandl P, Rosendahl C, Kittler H. The HAM10000 "
             "dataset. Scientific Data 5, 180161 (2018). doi:10.1038/sdata.2018.161.",
    homepage="https://challenge.isic-archive.com/data/#2018",
    needs_gpu="recommended for training at 256x256 or more (weeks 5-6); CPU works at 128x128",
)

REGISTRY: Dict[str, DatasetEntry] = {
    entry.name: entry for entry in (_MSD_BRAIN, _MSD_HIPPOCAMPUS, _ISIC2018)
}


def get_entry(name: str, *, registry: Optional[Dict[str, DatasetEntry]] = None) -> DatasetEntry:
    """Look up a data set by name, with a clear error listing the known names.

    Shape: name -> DatasetEntry.

    Example:
        >>> get_entry("msd-hippocampus").folder
        'Task04_Hippocampus'
    """
    registry = REGISTRY if registry is None else registry
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    if name not in registry:
        raise ValueError(f"name must be one of {sorted(registry)}, got {name!r}")
    return registry[name]
