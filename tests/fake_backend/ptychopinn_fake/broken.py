"""A plugin module that fails at import, as a backend with a missing dependency would.

Discovery must report the backend ``brokenfake`` as broken with this error and keep
every other backend usable.
"""

raise ImportError("ptychopinn_fake.broken: simulated import failure (No module named 'imaginary_framework')")
