"""medseg_edu: the library behind the medseg-edu course on medical image segmentation."""
__version__ = "0.1.0"
