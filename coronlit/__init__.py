"""Literate, fast JWST coronagraphic stage-3 reduction (calwebb_coron3 and beyond)

Modules:

- `coronlit.imsynth`: Dithered `_cal` images (gwcs in the ASDF extension, TAN-SIP in the SCI header) of stars and galaxies, each exposure's WCS wrong by a known shift and rotation, with its own sky level, cosmic rays and noise; an image3 association and a truth json. Deterministic by seed.
- `coronlit.outlier_imaging`: Drizzle each exposure onto a common grid, take the median, blot it back to every exposure, and flag the pixels that differ by more than the noise and the local gradient allow: the cosmic rays the ramp fit missed.
- `coronlit.resample_image`: Every exposure drizzled onto one output grid (north up by default), with inverse-variance or exposure-time weights, the pixel scale, rotation, shape, kernel and pixfrac asked for: SCI, ERR, WHT and CON of the `_i2d`.
- `coronlit.skymatch`: Measure each exposure's sky where the exposures overlap, solve for the levels that make them agree, add the lowest absolute sky (jwst's `global+match`), record them as BKGLEVEL, and subtract them only if asked.
- `coronlit.source_catalog`: Background, detection and deblending on the `_i2d`; the segmentation map; and a catalog with jwst's column names: positions, aperture fluxes at the encircled-energy radii of the user's APCORR file, isophotal and Kron fluxes, AB magnitudes and, with an ABVEGAOFFSET file, Vega magnitudes.
- `coronlit.tweakreg`: Find the stars in every exposure, match the catalogs between exposures, fit each one's shift and rotation with STScI's `tweakwcs`, optionally tie the group to an absolute catalog, and write the corrected WCS in both forms."""

__version__ = "0.1.0"

# The steps live in modules of their own names: `from coronlit.klip import klip`, etc.
_API = {"coron3": "pipeline", "Coron3Result": "pipeline", "coron3_many": "batch", "read_asn": "asn", "read_calints": "products",
        "read_product": "products", "write_product": "products", "make_dataset": "synth", "CoronlitError": "core"}

def __getattr__(name):
    "The top-level API (`coronlit.coron3`, the steps, the readers), imported on first use."
    if name not in _API: raise AttributeError(f"module 'coronlit' has no attribute {name!r}")
    import importlib
    return getattr(importlib.import_module(f"coronlit.{_API[name]}"), name)

def __dir__(): return sorted(list(globals()) + list(_API))
