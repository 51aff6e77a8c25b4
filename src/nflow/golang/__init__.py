"""Ports of the Go standard library pieces nFlow clients see byte for byte.

``nflow.golang.json`` writes JSON as Go's ``encoding/json`` does; ``nflow.golang.template``
renders Go ``html/template`` pages. Both are plain libraries: they import nothing of nflow,
so every layer may use them.
"""
