"""The synthetic street-view world: procedurally drawn, exactly labelled views of real countries.

A stand-in for Google Street View imagery that makes "did it learn?" measurable on a CPU: every
pixel has an ADE20K class (so the teacher's locatability is exact) and a country's look
(palette, road markings, sign shapes, script) is learnable from pixels.
"""

from georay.lazy import lazy_exports

_EXPORTS = {
    "SynthConfig": "georay.synth.config",
    "generate_world": "georay.synth.world",
}
__all__ = list(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
