"""Shipped presets (installed as the package data `jaxstyle.configs`)."""
