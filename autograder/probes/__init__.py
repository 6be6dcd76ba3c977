"""Trusted probe functions, imported in the worker's zygote and called as ``fn(module, *args)``.

A probe drives the student module (build a model, take a few training steps, differentiate)
and returns plain data only. Probes must never import ``solutions/``: the zygote refuses to
start if a reference module is loaded.
"""
