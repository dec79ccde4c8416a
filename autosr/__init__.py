"""autosr: zero-config training of super-resolution models."""

__version__ = "0.1.0"
