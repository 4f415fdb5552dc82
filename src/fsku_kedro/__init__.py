"""fsku_kedro: a Kedro project that builds a small Korean financial-security QA model."""

__version__ = "0.1.0"
