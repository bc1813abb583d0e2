__version__ = "0.1.0"

# The steps live in modules of their own names: `from coronlit.klip import klip`, etc.
_API = {"coron3": "pipeline", "Coron3Result": "pipeline", "coron3_many": "batch", "coron3_on": "batch", "read_asn": "asn",
        "read_calints": "products", "read_product": "products", "write_product": "stream", "make_dataset": "synth",
        "CoronlitError": "core", "image3": "impipeline", "image3_many": "router", "stage3": "router", "fetch": "datasets",
        "characterize": "companions", "measure_run": "companions"}

def __getattr__(name):
    "The top-level API (`coronlit.coron3`, the steps, the readers), imported on first use."
    if name not in _API: raise AttributeError(f"module 'coronlit' has no attribute {name!r}")
    import importlib
    return getattr(importlib.import_module(f"coronlit.{_API[name]}"), name)

def __dir__(): return sorted(list(globals()) + list(_API))
