"""Run by tests/test_nnunet_compare.py in a fresh process: nnunetv2's own tools on one data set.

Usage: python nnunet_plan_script.py NNUNET_RAW NNUNET_PREPROCESSED DATASET_ID PREDICTIONS [MSD_TASK_FOLDER]

Checks the raw data set with nnunetv2's ``verify_dataset_integrity``, extracts its fingerprint (with
fewer foreground samples than nnU-Net's 1e8, to keep memory small), runs the default experiment
planner, writes the first training label as a prediction would be written (nnunetv2's SimpleITKIO
``write_seg``, and a one-hot ``.npz`` in nnU-Net's axis order) into PREDICTIONS, and, given an MSD
task folder (``TaskXX_Name``), converts it with nnunetv2's MSD converter to data set id 99. Prints
one line ``RESULT {json}``. nnunetv2 reads its folders from environment variables when it is
imported, hence the separate process. Not collected by pytest.
"""
import json
import os
import sys

import numpy as np


def main() -> None:
    raw, preprocessed, dataset_id = sys.argv[1], sys.argv[2], int(sys.argv[3])
    os.environ.update(nnUNet_raw=raw, nnUNet_preprocessed=preprocessed, nnUNet_results=preprocessed)
    from nnunetv2.dataset_conversion.convert_MSD_dataset import convert_msd_dataset
    from nnunetv2.experiment_planning.dataset_fingerprint.fingerprint_extractor import DatasetFingerprintExtractor
    from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    verify_dataset_integrity(os.path.join(raw, maybe_convert_to_dataset_name(dataset_id)), num_processes=1)
    extractor = DatasetFingerprintExtractor(dataset_id, num_processes=1, verbose=False)
    extractor.num_foreground_voxels_for_intensitystats = 4e5
    fingerprint = extractor.run()
    plans = ExperimentPlanner(dataset_id).plan_experiment()
    labels_dir = os.path.join(raw, maybe_convert_to_dataset_name(dataset_id), "labelsTr")
    first = sorted(os.listdir(labels_dir))[0]
    seg, properties = SimpleITKIO().read_seg(os.path.join(labels_dir, first))     # (1, z, y, x)
    os.makedirs(sys.argv[4], exist_ok=True)
    SimpleITKIO().write_seg(seg[0].astype(np.uint8), os.path.join(sys.argv[4], first), properties)
    one_hot = np.stack([seg[0] == k for k in range(4)]).astype(np.float32)
    np.savez_compressed(os.path.join(sys.argv[4], first.replace(".nii.gz", ".npz")), probabilities=one_hot)
    converted = None
    if len(sys.argv) > 5:
        convert_msd_dataset(sys.argv[5], overwrite_target_id=99, num_processes=1)
        folder = os.path.join(raw, maybe_convert_to_dataset_name(99))
        converted = sorted(os.listdir(os.path.join(folder, "imagesTs")))
    result = {"plans": plans, "converted_imagesTs": converted,
              "median_relative_size_after_cropping": float(fingerprint["median_relative_size_after_cropping"])}
    print("RESULT " + json.dumps(result, default=float))


if __name__ == "__main__":
    main()
