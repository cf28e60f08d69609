"""DICOM in and out (optional extra ``[dicom]``): image series, DICOM SEG and RT-STRUCT.

``series`` reads a scanner's series into the library's RAS volume and writes volumes (phantoms,
NIfTI files) as MR series; ``seg`` and ``rtstruct`` hand a segmentation back as a DICOM SEG or an
RT Structure Set that references its source series, and read them back onto the source grid.
Importing these modules needs only numpy and nibabel; pydicom (and highdicom for SEG) are imported
when a function runs, with a message naming the extra when they are missing.
"""
from medseg_edu.dicom.rtstruct import read_rtstruct, write_rtstruct
from medseg_edu.dicom.seg import read_dicom_seg, write_dicom_seg
from medseg_edu.dicom.series import read_dicom_series, write_dicom_series

__all__ = ["read_dicom_series", "write_dicom_series", "write_dicom_seg", "read_dicom_seg",
           "write_rtstruct", "read_rtstruct"]
