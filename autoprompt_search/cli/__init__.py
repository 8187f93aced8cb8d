"""The `search-templates` command line."""
from .main import main

__all__ = ['main']
