"""PtychoPINN core: data contract, reference physics, plugin system and CLI."""

__version__ = "0.1.0"
