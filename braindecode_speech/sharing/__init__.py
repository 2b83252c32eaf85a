"""Share trained models: export a run into a self-contained model folder, load it with
:meth:`BrainDecoder.from_pretrained` (a local folder or a Hugging Face Hub repo) and decode new
recordings with it; calibrate it to a new subject in minutes
(:mod:`~braindecode_speech.sharing.calibration`)."""

from .calibration import CalibrationResult, calibrate, calibration_curve, plot_calibration_curve
from .decoder import BrainDecoder, Candidates, build_encoder, plot_decoding
from .export import export_run
from .folder import ModelFolderError, SensorLayout, SharingError

__all__ = ["BrainDecoder", "CalibrationResult", "Candidates", "ModelFolderError", "SensorLayout",
           "SharingError", "build_encoder", "calibrate", "calibration_curve", "export_run",
           "plot_calibration_curve", "plot_decoding"]
