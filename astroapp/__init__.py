"""astroapp: localize astronaut photographs of Earth."""

__version__ = "0.1.0"
