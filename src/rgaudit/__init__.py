"""rgaudit: audit deep networks with the renormalisation group."""

__version__ = "0.1.0"
