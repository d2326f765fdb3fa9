"""Squall's zygote, as a package run by path (``python -s .../_squall_zygote``): see ``__main__``."""
