"""Tools over the whole compiler (imported as ``graphc.tools``): pictures of memory plans.

The top layer with the command line: it may import the core, the passes and the backends;
none of them imports it.
"""
