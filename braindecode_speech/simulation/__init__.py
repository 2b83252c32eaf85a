"""The simulated speech-listening study: stimuli, brain responses, noise and BIDS output.

``simulate(SimulationConfig.preset("demo"), root)`` writes a MEG-MASC-like BIDS dataset;
``simulate_brain_signals(info, events, n_times, seed)`` simulates the brain and noise of one
recording for any sensor set.
"""

from .brain import DEFAULT_SNR, simulate_brain_signals
from .config import PRESETS, SimulationConfig
from .writer import simulate

__all__ = ["SimulationConfig", "PRESETS", "DEFAULT_SNR", "simulate", "simulate_brain_signals"]
