"""DeepM3: continuous-time sequential recommendation with honest, full-ranking evaluation."""

__version__ = "0.1.0"
