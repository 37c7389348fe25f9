"""Compiler passes and analyses over :class:`graphc.Graph` (imported as ``graphc.passes``)."""
