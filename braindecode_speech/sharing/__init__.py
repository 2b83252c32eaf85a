"""Share trained models: export a run into a self-contained model folder, load it with
:meth:`BrainDecoder.from_pretrained` (a local folder or a Hugging Face Hub repo) and decode new
recordings with it."""

from .decoder import BrainDecoder, Candidates, build_encoder, plot_decoding
from .export import export_run
from .folder import ModelFolderError, SensorLayout, SharingError

__all__ = ["BrainDecoder", "Candidates", "ModelFolderError", "SensorLayout", "SharingError",
           "build_encoder", "export_run", "plot_decoding"]
