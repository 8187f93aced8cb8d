"""autoprompt_search: LM-BFF-style automatic prompt (template + label word) search."""

__version__ = "0.1.0"
