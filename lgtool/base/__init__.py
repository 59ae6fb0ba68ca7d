"""The bottom layer, torch-free: the architecture (`arch`), the safetensors header (`header`), user errors,
safe text, atomic writes, environment compatibility and the lazy loading of heavy libraries (`lazy`).

Everything above may import from here; nothing here imports from above.
"""

__version__ = "0.1.0"
